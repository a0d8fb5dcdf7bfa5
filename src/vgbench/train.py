"""Train a stack of runs and write each run's summary.json: setup -> fit -> summarize.

    vgbench-train activation=sigmoid model.depth=10        (the command line: vgbench.app)
    python -m vgbench optimizer=adam optimizer.lr=1e-3      (the same)

The job engine (vgbench.jobs) validates each run, opens its folder (`open_run`), groups runs into stacks
and calls `train_stack`; this module trains one stack.

A stack is K runs of one shape (vgbench.config.stack_key) trained as one vectorised model; a run alone
is a stack of one, through this same code. Per epoch: each run's batches of its own seeded permutation,
one forward pass for every run, each run's own mean loss, one backward pass, one optimizer step for
every run; then evaluation and a checkpoint per run. The step stays on the device: losses and
accuracies accumulate as tensors and reach the host once per log event.

A run leaves the stack early when its loss diverges (status diverged) or its `trainer.stop_at` condition
holds (status completed: it is tested and its summary written there and then); its stack-mates go on
without computing it. Each run's targets (vgbench.targets) are checked at log events and evaluations.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from tqdm import tqdm

from vgbench import theory
from vgbench.checkpoint import RunFolder, inspect_run_folder, save_checkpoint
from vgbench.config import hidden_widths, run_identity
from vgbench.data import Data, InputMoments, Split, epoch_orders, input_moments, load_data
from vgbench.files import finite_or_none, written_behind
from vgbench.flow import classify
from vgbench.graphs import CaptureError, GraphedStep, why_not_graphed, will_graph
from vgbench.losses import LOSSES, LossFunction
from vgbench.model import MLP, Trace, auto_weight_init, build_model
from vgbench.monitor import GradientMonitor, Sent, jacobian_spectrum
from vgbench.optim import StackedOptimizer, build_optimizer
from vgbench.placement import Placement
from vgbench.precision import MixedPrecision
from vgbench.recorder import Recorder
from vgbench.run_lock import RunLock
from vgbench.run_logs import about
from vgbench.run_slices import load_run_slice, run_slices
from vgbench.runtime import apply_job_settings, configure_threads, resolve_device
from vgbench.summary import CHECKPOINT_FILE, COMPLETED, DIVERGED, Summary, write_summary
from vgbench.targets import TargetTracker, run_targets
from vgbench.validate import validate
from vgbench.version import __version__

log = logging.getLogger(__name__)


@dataclass(eq=False)  # a run is itself: compared by identity
class Run:
    """One run of a stack: its config and folder, its progress, where its measurements go."""

    cfg: DictConfig
    run_dir: Path
    identity: str  # vgbench.config.run_identity, which each checkpoint records
    config: dict[str, Any]  # cfg as plain containers, resolved: what summary.json records
    recorder: Recorder
    targets: TargetTracker
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_done: int = 0
    seconds_before: float = 0.0  # training time before this process (a resumed run's checkpoint)
    diverged: bool = False
    stopped_at: str | None = None  # the trainer.stop_at condition, once it held
    summary: Summary | None = None  # written: the run is finished
    epoch_loss: float = math.nan  # this epoch's running mean training loss and accuracy, at the last log event
    epoch_acc: float = math.nan
    recent: dict[str, float] = field(default_factory=dict)  # train_loss, train_acc over the last log interval


@dataclass
class InFlight:
    """A measured step's statistics on their way to the host (GradientMonitor.send): the runs it measured (those
    training then) and the epoch it is recorded under."""

    sent: Sent
    runs: list[Run]
    epoch: int


def run_prefix(run_dir: Path, stack_size: int) -> str:
    """What a log line about one run starts with: its folder's name when it shares a stack."""
    return f"{run_dir.name}: " if stack_size > 1 else ""


@dataclass
class Stack:
    runs: list[Run]  # every run, for the summaries
    training: list[Run]  # the runs in the model, in its order: a diverged run leaves the computation
    shape: DictConfig  # the config the runs share (the first run's)
    device: torch.device
    threads: int
    data: Data
    model: MLP
    optimizer: StackedOptimizer
    loss_fn: LossFunction
    precision: MixedPrecision
    monitor: GradientMonitor | None
    placement: Placement
    started: float
    train_started: float = 0.0  # when fit began (time.perf_counter)
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    steps_before: int = 0  # where this process started (a resumed stack's step count)
    train_seconds: float = 0.0
    input_moments: InputMoments = InputMoments(1.0, 0.0, 1.0)  # the data's, for the theory
    predictions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # this epoch's running sums of each run's training loss (times its examples) and correct predictions: on
    # the device, kept across epochs (a CUDA graph adds to these very tensors)
    loss_sum: Tensor = field(init=False)
    correct: Tensor = field(init=False)
    # trainer.cuda_graphs: the full batches' steps, replayed (vgbench.graphs), one graph per kind: "plain" and
    # "measured" (the monitor's steps, without histograms)
    graphs: dict[str, GraphedStep] = field(default_factory=dict)
    graphed_steps: int = 0  # steps this process ran from a CUDA graph
    in_flight: list[InFlight] = field(default_factory=list)  # measured steps sent, not yet recorded (`record`)

    def __post_init__(self) -> None:
        self.loss_sum = torch.zeros(len(self.training), device=self.device)
        self.correct = torch.zeros(len(self.training), device=self.device)

    @property
    def seeds(self) -> list[int]:
        return [run.cfg.trainer.seed for run in self.training]

    def log(self, level: int, run: Run, message: str, *args: Any) -> None:
        """A line about one run: named by its folder when it shares a stack, into its own train.log only
        (vgbench.run_logs)."""
        log.log(level, "%s" + message, run_prefix(run.run_dir, len(self.runs)), *args, **about(run.run_dir))

    def seconds(self, run: Run) -> float:
        """The run's training time so far, across resumes (a stack's runs share its clock)."""
        return run.seconds_before + time.perf_counter() - self.train_started

    def drop(self, leaving: list[Run]) -> Tensor:
        """Take these runs out of the model and the optimizer: they stop, their stack-mates go on without
        computing them. Returns the rows (model order) that stay."""
        rows = [i for i, run in enumerate(self.training) if run not in leaving]
        self.training = [self.training[i] for i in rows]
        rows = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.loss_sum, self.correct = self.loss_sum[rows], self.correct[rows]
        if self.training:  # else nothing is left to compute
            self.model.keep_runs(rows)
            self.optimizer.keep_runs(rows, list(self.model.parameters()))
            for graph in self.graphs.values():  # each holds the old parameters
                graph.reset(len(rows))
        return rows


@dataclass
class Environment:
    """What the runs of one shape train on, set up once per process and group of runs and handed to both
    the memory planner (vgbench.memory) and each stack: the device, torch's threads, the data on the device."""

    device: torch.device
    threads: int
    data: Data


def prepare(shape: DictConfig, placement: Placement) -> Environment:
    """Resolve the device, set torch's threads (before any tensor work: the data's normalisation depends on
    them), and load the data onto the device (prepared once per process, vgbench.data)."""
    device = resolve_device(shape.trainer.device, placement.gpu_slot)
    threads = configure_threads(shape.trainer.cpu_threads, placement.threads)
    data = load_data(shape.data, device)
    log.info("data: %s (%d train, %d test) from %s", shape.data.name, len(data.train), len(data.test), data.source)
    return Environment(device, threads, data)


def setup(
    folders: Sequence[RunFolder],
    cfgs: Sequence[DictConfig],
    placement: Placement,
    environment: Environment | None = None,
) -> Stack:
    """The stacked model (each run's init or checkpoint), optimizer, monitor, on `environment` (`prepare`d
    here when not given)."""
    started = time.perf_counter()
    shape = cfgs[0]
    epochs = {folder.start_epoch for folder in folders}
    if len(epochs) > 1:
        raise ValueError(f"the runs of a stack must resume from one epoch, not {sorted(epochs)}")
    environment = environment or prepare(shape, placement)
    device, threads, data = environment.device, environment.threads, environment.data
    apply_job_settings(shape.trainer.seed, shape.trainer.deterministic, shape.trainer.tf32)
    if shape.trainer.tf32 and device.type != "cuda":
        log.info("trainer.tf32 has no effect on %s: TensorFloat-32 is a CUDA GPU's", device)
    precision = MixedPrecision(shape.trainer.amp, device)
    if shape.trainer.amp == "fp16" and shape.monitor.enabled:
        log.warning(
            "trainer.amp=fp16 with the monitor: fp16 holds no gradient below about 6e-8, so a deep network's "
            "vanishing first layers can read as exactly 0; the monitor unscales and measures in float32, but what "
            "underflowed in the backward pass is gone. Measure with amp=none or bf16"
        )

    model = build_model(cfgs, data.num_features, data.num_classes, threads)
    if model.activation.name == "custom" and shape.model.init == "auto":
        log.info(
            "activation=custom: init=auto draws %s (Kaiming is for ReLU-like units; set model.init to choose)",
            auto_weight_init(model.activation),
        )
    for index, folder in enumerate(folders):
        if folder.checkpoint:
            load_run_slice(model, index, folder.checkpoint["model"])
    model.to(device)
    optimizer = build_optimizer([cfg.optimizer for cfg in cfgs], list(model.parameters()))
    runs = []
    for index, (folder, cfg) in enumerate(zip(folders, cfgs, strict=True)):
        saved = folder.checkpoint
        if saved:
            optimizer.load_run_state(index, saved["optimizer"])
            precision.scaler.load_state_dict(saved["scaler"])
            log.info(
                "%sresumed from %s after epoch %d",
                run_prefix(folder.run_dir, len(cfgs)),
                folder.run_dir / CHECKPOINT_FILE,
                saved["epoch"],
            )
        recorder = Recorder(
            folder.run_dir,
            len(model.linears()),
            cfg.logger.tensorboard,
            saved["recorder"] if saved else None,
            saved["step"] if saved else None,
        )
        targets, stop_at = run_targets(cfg.trainer.targets, cfg.trainer.stop_at, cfg.data.val_size)
        config = folder.config if folder.config is not None else OmegaConf.to_container(cfg, resolve=True)
        runs.append(
            Run(
                cfg,
                folder.run_dir,
                folder.identity or run_identity(config),
                config,
                recorder,
                TargetTracker(targets, stop_at, saved["targets"] if saved else {}),
                saved["history"] if saved else [],
                saved["epoch"] if saved else 0,
                saved["train_seconds"] if saved else 0.0,
            )
        )
    monitor = None
    if shape.monitor.enabled:
        # histograms go to TensorBoard only: without it no run of the stack would read them
        histograms = shape.monitor.histogram_every_n_steps if any(cfg.logger.tensorboard for cfg in cfgs) else 0
        monitor = GradientMonitor(model, shape.monitor.every_n_steps, histograms, shape.monitor.jacobian)
    step = folders[0].checkpoint["step"] if folders[0].checkpoint else 0
    log.info("%d run(s) of a %s on %s (%d torch threads)", len(runs), model.describe(), device, threads)
    log.debug("model: %s", model)
    stack = Stack(
        runs,
        list(runs),
        shape,
        device,
        threads,
        data,
        model,
        optimizer,
        LOSSES[shape.loss],
        precision,
        monitor,
        placement,
        started,
        epoch=epochs.pop(),
        step=step,
        steps_before=step,
        input_moments=input_moments(data),
    )
    if will_graph(shape, device):
        side_stream = torch.cuda.Stream(device)
        graph = functools.partial(GraphedStep, runs=len(runs), batch_size=shape.data.batch_size, device=device)
        stack.graphs["plain"] = graph(lambda idx: device_step(stack, idx), side_stream=side_stream)
        if monitor is not None:
            stack.graphs["measured"] = graph(lambda idx: device_step(stack, idx, Trace()), side_stream=side_stream)
    elif shape.trainer.cuda_graphs:  # asked for by name: say why not
        log.warning("trainer.cuda_graphs: %s; each step is launched op by op", why_not_graphed(shape, device))
    return stack


BATCH_LOSS = "train/batch_loss"  # what a measured step sends along beside the statistics: each run's batch loss


def train_step(stack: Stack, idx: Tensor, measured_in_epoch: int | None = None) -> None:
    """One optimizer step of every run still training, each on its own examples `idx` ([K, batch]
    indices), launched op by op; each run's loss and correct predictions add to the stack's running sums.
    With `measured_in_epoch` (from 1) the monitor measures the step and each run records it under that epoch."""
    monitor = stack.monitor
    if measured_in_epoch is None:
        device_step(stack, idx)
        return
    if monitor.jacobian and stack.step == 0:  # the initialised network's Jacobian
        x, _ = stack.data.train.gather(idx)
        for run, spectrum in zip(stack.training, jacobian_spectrum(stack.model, x), strict=True):
            run.recorder.jacobian = spectrum
    trace = Trace()
    table = device_step(stack, idx, trace)
    histograms = monitor.histogram_values(trace) if monitor.histograms_due(stack.step) else []
    record(stack, table, measured_in_epoch, histograms)


def device_step(stack: Stack, idx: Tensor, trace: Trace | None = None) -> Tensor | None:
    """The step's work on the device: gather the batch, forward, loss, backward, update, the running sums;
    with a `trace`, the monitor's statistics, returned as its table ([metrics, K]). Nothing in it waits for
    the host, and what it leaves behind lives in tensors that outlive it: on a full batch, this is what a
    CUDA graph captures and replays (vgbench.graphs)."""
    model, optimizer, precision, monitor = stack.model, stack.optimizer, stack.precision, stack.monitor
    x, y = stack.data.train.gather(idx)  # [K, batch, features]: each run's own examples
    with precision.autocast():
        logits = model(x, trace)
    losses = stack.loss_fn(logits.float(), y).mean(dim=1)  # each run's own mean loss
    optimizer.zero_grad()
    weight_norm = monitor.weight_norms() if trace is not None else None  # before the step changes the weights
    # the sum: each run gets its own gradient
    stepped = precision.backward_and_step(losses.sum(), optimizer, keep_updates=trace is not None)
    stack.loss_sum += losses.detach() * y.shape[1]
    stack.correct += (logits.argmax(dim=-1) == y).sum(dim=1)
    if trace is None:
        return None
    return monitor.table(trace, stepped, weight_norm, {BATCH_LOSS: losses.detach()})


def record(stack: Stack, table: Tensor, epoch: int, histogram_values: list[Tensor]) -> None:
    """A measured step's statistics (`device_step`'s table) to each run's recorder, in one host transfer,
    started now and read at the next measured step or log event, whichever comes first (`deliver`): on a
    GPU the host writes one measured step's records while the device runs the next step."""
    sent = stack.monitor.send(stack.step, table, [BATCH_LOSS], histogram_values)
    stack.in_flight.append(InFlight(sent, list(stack.training), epoch))
    deliver(stack, keep_last=True)


def deliver(stack: Stack, keep_last: bool = False) -> None:
    """Each measured step sent to the host (`record`), read and handed to its runs' recorders, oldest first;
    with `keep_last`, all but the newest, still on its way."""
    arrived = stack.in_flight[:-1] if keep_last else stack.in_flight
    stack.in_flight = stack.in_flight[-1:] if keep_last else []
    for item in arrived:
        measurements = stack.monitor.received(item.sent)
        for run, measurement in zip(item.runs, measurements, strict=True):
            run.recorder.measurement(measurement, item.epoch)


def graphed_step(stack: Stack, kind: str, idx: Tensor, measured_in_epoch: int | None = None) -> None:
    """train_step through the stack's CUDA graph of this kind (vgbench.graphs). A step that cannot be
    captured goes op by op, and so do the rest of the stack's steps of its kind."""
    graph = stack.graphs[kind]
    steps, replays = stack.optimizer.steps, graph.replays
    try:
        if graph(idx):  # replayed alone: the step's Python, the optimizer's count in it, did not run
            stack.optimizer.steps += 1
        stack.graphed_steps += graph.replays - replays
    except CaptureError as error:  # nothing of the step ran
        log.warning(
            "trainer.cuda_graphs: the %s step could not be captured (%s); each is launched op by op", kind, error
        )
        del stack.graphs[kind]
        stack.optimizer.steps = steps
        train_step(stack, idx, measured_in_epoch)
        return
    if measured_in_epoch is not None:
        record(stack, graph.output, measured_in_epoch, [])


def graph_kind(stack: Stack, measured: bool, full_batch: bool) -> str | None:
    """The graph that takes this step, or None when it goes op by op: a smaller batch, a step with
    histograms or the Jacobian, a kind with no graph."""
    monitor = stack.monitor
    if not full_batch or (measured and (monitor.histograms_due(stack.step) or (monitor.jacobian and stack.step == 0))):
        return None
    kind = "measured" if measured else "plain"
    return kind if kind in stack.graphs else None


def train_epoch(stack: Stack, epoch: int) -> None:
    """One pass over the training split for every run still training; each run's mean loss and accuracy
    go to its `epoch_loss` and `epoch_acc`.

    Divergence and the train_* targets are checked at each log event (every `trainer.log_every_n_steps`
    steps and the epoch's last): once a run's loss is NaN or infinite its running sum stays so, and checking
    every step would cost a host sync per step. A diverged run, or one whose stop condition holds (tested and
    summarised there: `finish`), leaves the stack there (`Stack.drop`); its stack-mates go on. Each log event
    first records the measured steps still on their way to the host (`record`).
    """
    train, monitor = stack.data.train, stack.monitor
    batch_size, log_every = stack.shape.data.batch_size, stack.shape.trainer.log_every_n_steps
    stack.model.train()
    stack.model.seed_dropout(stack.seeds, epoch, stack.device)
    orders = epoch_orders(len(train), stack.seeds, epoch, stack.device)  # each run's own order of the examples
    stack.loss_sum.zero_()
    stack.correct.zero_()
    seen = logged_seen = 0
    logged: dict[Run, tuple[float, float]] = {}  # each run's sums at the previous log event
    num_batches = math.ceil(len(train) / batch_size)
    progress = tqdm(
        total=num_batches,
        desc=f"epoch {epoch + 1}/{stack.shape.trainer.epochs}",
        disable=None if stack.placement.progress else True,
        leave=False,
    )
    for batch in range(1, num_batches + 1):
        idx = orders[:, (batch - 1) * batch_size : batch * batch_size]
        measuring = monitor is not None and monitor.due(stack.step, batch == num_batches)
        measured_in_epoch = epoch + 1 if measuring else None
        kind = graph_kind(stack, measuring, idx.shape[1] == batch_size)
        if kind is not None:
            graphed_step(stack, kind, idx, measured_in_epoch)
        else:
            train_step(stack, idx, measured_in_epoch)
        stack.step += 1
        seen += idx.shape[1]
        if batch % log_every == 0 or batch == num_batches:
            deliver(stack)  # every measured step recorded before a run can stop or leave
            loss_sums, corrects = torch.stack([stack.loss_sum, stack.correct]).tolist()  # the one host sync
            leaving, stopping = [], []
            for run, loss_sum, correct in zip(stack.training, loss_sums, corrects, strict=True):
                run.epoch_loss, run.epoch_acc = loss_sum / seen, correct / seen
                if not math.isfinite(run.epoch_loss):
                    run.diverged = True
                    leaving.append(run)
                    stack.log(
                        logging.WARNING,
                        run,
                        "epoch %d: the training loss is %s; stopping it (status: diverged)",
                        epoch + 1,
                        run.epoch_loss,
                    )
                    continue
                before_loss, before_correct = logged.get(run, (0.0, 0.0))
                run.recent = {  # the mean over the steps since the previous log event
                    "train_loss": (loss_sum - before_loss) / (seen - logged_seen),
                    "train_acc": (correct - before_correct) / (seen - logged_seen),
                }
                logged[run] = loss_sum, correct
                if run.targets.update(run.recent, stack.step, epoch + 1, stack.seconds(run)):
                    stopping.append(run)
            logged_seen = seen
            progress.update(batch - progress.n)
            progress.set_postfix(
                loss=f"{min(r.epoch_loss for r in stack.training):.4f}",
                acc=f"{max(r.epoch_acc for r in stack.training):.4f}",
            )
            if stopping:
                stop(stack, stopping, epoch, mid_epoch=True)  # before the epoch's evaluation and checkpoint
                stack.model.train()  # the test pass left it in eval mode
            if leaving or stopping:
                orders = orders[stack.drop(leaving + stopping)]
            if not stack.training:
                break
    progress.close()


@torch.no_grad()
def evaluate(model: MLP, split: Split, batch_size: int, loss_fn: LossFunction) -> tuple[list[float], list[float]]:
    """Each run's mean loss and accuracy over a split (every run sees the same examples); one host sync."""
    model.eval()
    stack = model.stack
    loss_sum = torch.zeros(stack, device=split.x.device)
    correct = torch.zeros(stack, device=split.x.device)
    for x, y in zip(split.x.split(batch_size), split.y.split(batch_size), strict=True):
        logits = model(x.expand(stack, *x.shape))
        loss_sum += loss_fn(logits.float(), y.expand(stack, -1)).sum(dim=1)
        correct += (logits.argmax(dim=-1) == y).sum(dim=1)
    loss, accuracy = (torch.stack([loss_sum, correct]) / len(split)).tolist()
    return loss, accuracy


def stop(stack: Stack, runs: list[Run], epoch: int, mid_epoch: bool) -> None:
    """These runs' stop condition holds: test them and write their summaries now (the caller drops them)."""
    for run in runs:
        run.stopped_at = str(run.targets.stop_at)
        stack.log(
            logging.INFO,
            run,
            "epoch %d, step %d: %s holds; stopping it (trainer.stop_at)",
            epoch + 1,
            stack.step,
            run.stopped_at,
        )
    finish(stack, runs, time.perf_counter() - stack.train_started, mid_epoch)


def fit(stack: Stack) -> None:
    """The epochs: train, evaluate the held-out split, check the targets, record, checkpoint each run."""
    trainer = stack.shape.trainer
    stack.train_started = time.perf_counter()
    for epoch in range(stack.epoch, trainer.epochs):
        train_epoch(stack, epoch)
        if not stack.training:
            break
        held_out: dict[str, list[float]] = {}
        if (epoch + 1) % trainer.eval_every == 0 or epoch + 1 == trainer.epochs:
            split_name, split = stack.data.held_out
            loss, accuracy = evaluate(stack.model, split, stack.shape.data.eval_batch_size, stack.loss_fn)
            held_out = {f"{split_name}_loss": loss, f"{split_name}_acc": accuracy}
        stack.epoch = epoch + 1
        if trainer.checkpoint:  # each tensor leaves the device once, then is cut into the runs' shares
            model_states = run_slices(stack.model.state_dict(), len(stack.training))
            optimizer_states, scaler_state = stack.optimizer.run_states(), stack.precision.scaler.state_dict()
        stopping = []
        # each run's tables and checkpoint are written and synced while the next run's are prepared
        with written_behind():
            for index, run in enumerate(stack.training):
                record = {"epoch": epoch + 1, "train_loss": run.epoch_loss, "train_acc": run.epoch_acc}
                evaluated = {key: values[index] for key, values in held_out.items()}
                record |= evaluated
                if evaluated and run.targets.update(evaluated, stack.step, epoch + 1, stack.seconds(run)):
                    stopping.append(run)
                run.history.append(record)
                run.epochs_done = epoch + 1
                stack.log(
                    logging.INFO,
                    run,
                    "epoch %d/%d: %s",
                    epoch + 1,
                    trainer.epochs,
                    ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"),
                )
                run.recorder.epoch_end(stack.step - 1, record, run.cfg.optimizer.lr)
                if trainer.checkpoint:
                    save_checkpoint(
                        run.run_dir / CHECKPOINT_FILE,
                        run.identity,
                        model_states[index],
                        optimizer_states[index],
                        scaler_state,
                        run.epochs_done,
                        stack.step,
                        run.history,
                        run.recorder.state(),
                        run.targets.reached,
                        stack.seconds(run),
                    )
        if stopping:
            stop(stack, stopping, epoch, mid_epoch=False)
            stack.drop(stopping)
            if not stack.training:
                break
    stack.train_seconds = time.perf_counter() - stack.train_started


def prediction(stack: Stack, run: Run) -> dict[str, Any]:
    """The mean-field prediction for this run's model and data (vgbench.theory), beside its step-0
    measurement. Runs with the same model settings (seeds) share one computation."""
    key = json.dumps([run.config["model"], run.config["activation"], run.config["data"]["batch_size"]])
    if key not in stack.predictions:
        sizes = [stack.data.num_features, *hidden_widths(run.cfg.model), stack.data.num_classes]
        stack.predictions[key] = theory.predict(run.cfg, stack.model.activation, sizes, *stack.input_moments)
    step0 = run.recorder.profiles.get("step0")
    return theory.compare(stack.predictions[key], step0["layers"]["delta_norm"] if step0 else None)


def summarize(stack: Stack) -> list[Summary]:
    """Write the summary of every run not yet finished (`finish`); every run's summary, in order."""
    finish(stack, [run for run in stack.runs if run.summary is None], stack.train_seconds)
    return [run.summary for run in stack.runs]


def finish(stack: Stack, runs: list[Run], train_seconds: float, mid_epoch: bool = False) -> None:
    """Test these runs where they still train, then write each one's summary.json (and its HParams entry)
    and keep it as `run.summary`. A diverged run has no test numbers (its weights are not finite). Its
    `final` numbers are the last epoch's, or with `mid_epoch` (a run stopped before its epoch's end) the
    training loss and accuracy of the last log interval, which its stop condition read."""
    tested = {}
    if any(run in stack.training for run in runs):
        loss, accuracy = evaluate(stack.model, stack.data.test, stack.shape.data.eval_batch_size, stack.loss_fn)
        tested = {run: values for run, *values in zip(stack.training, loss, accuracy, strict=True)}
    steps_taken = stack.step - stack.steps_before
    written: list[tuple[Run, str, float, float, Path]] = []  # what each run's log line says
    with written_behind():  # each summary written and synced while the next run's is prepared
        for run in runs:
            test_loss, test_acc = tested.get(run, (math.nan, math.nan))
            final = {"test_loss": test_loss, "test_acc": test_acc if math.isfinite(test_loss) else math.nan}
            if mid_epoch:
                final |= run.recent
            elif run.history:
                final |= {k: v for k, v in run.history[-1].items() if k != "epoch"}
            summary = Summary(
                status=DIVERGED if run.diverged else COMPLETED,
                final=final,
                epochs_done=run.epochs_done,
                steps=stack.step,
                history=run.history,
                targets=run.targets.reached,
                stopped_at=run.stopped_at,
                wall_time_s=time.perf_counter() - stack.started,
                steps_per_s=steps_taken / train_seconds if train_seconds > 0 else None,
                graphed_steps=stack.graphed_steps,
                device=str(stack.device),
                cpu_threads=stack.threads,
                stack_size=len(stack.runs),
                torch_version=torch.__version__,
                vgbench_version=__version__,
                data_source=stack.data.source,
                first_to_last_grad_ratio={
                    which: run.recorder.ratio("first_to_last_grad_ratio", which) for which in ("step0", "final")
                },
                first_to_last_delta_ratio={
                    which: run.recorder.ratio("first_to_last_delta_ratio", which) for which in ("step0", "final")
                },
                profile=run.recorder.profiles,
                flow=classify(run.recorder.profiles.get("step0")),
                theory=prediction(stack, run),
                config=run.config,
            )
            if run.recorder.jacobian:
                summary["jacobian"] = run.recorder.jacobian
            run.recorder.finish(summary)
            path = write_summary(run.run_dir, summary)
            written.append((run, summary["status"], final["test_acc"], test_loss, path))
            run.summary = finite_or_none(summary)  # as summary.json holds it
    for run, *said in written:  # each summary.json is whole and synced by now
        stack.log(logging.INFO, run, "%s: test accuracy %.4f, test loss %.4f (summary: %s)", *said)


def train_stack(
    folders: Sequence[RunFolder],
    cfgs: Sequence[DictConfig],
    placement: Placement | None = None,
    environment: Environment | None = None,
) -> list[Summary]:
    """Train runs of one shape, validated and with their folders inspected, as one stack."""
    stack = setup(folders, cfgs, placement or Placement(), environment)
    fit(stack)
    return summarize(stack)


def open_run(cfg: DictConfig, run_dir: Path, lock: RunLock | None = None) -> RunFolder:
    """Validate a run's config, hold its folder (`lock`: RunFolderBusy where another process holds it), and
    inspect it: what to resume, or (`folder.completed`) that this very run already finished there."""
    validate(cfg)
    if lock is not None:
        lock.acquire()
    folder = inspect_run_folder(cfg, run_dir)
    if folder.completed is not None:
        log.info("%s already records this run as finished; skipping it (trainer.skip_completed)", run_dir)
    return folder


def run(cfg: DictConfig, run_dir: Path, placement: Placement | None = None) -> Summary:
    """One run as `vgbench-train` runs it: open its folder (`open_run`), then train it as a stack of one."""
    lock = RunLock(run_dir)
    try:
        folder = open_run(cfg, run_dir, lock)
        if folder.completed is not None:
            return folder.completed
        return train_stack([folder], [cfg], placement)[0]
    finally:
        lock.release()
