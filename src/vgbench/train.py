"""Train one MLP from the Hydra config and write `summary.json` into the run folder.

    python -m vgbench.train activation=sigmoid model.depth=10      (the command line is vgbench.app)
    vgbench-train optimizer=adam optimizer.lr=1e-3 trainer.epochs=5

The loop reads top to bottom: provision data, build the model, then per epoch: batches of a
seeded permutation, forward, loss, backward, step; evaluate; checkpoint. The step stays on the device:
loss and accuracy accumulate as tensors and reach the host once per log event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm

from vgbench.config import ConfigError, validate
from vgbench.data import Data, Split, epoch_batches, load_data
from vgbench.files import save_torch_atomic, write_json_atomic
from vgbench.model import build_model
from vgbench.monitor import GradientMonitor
from vgbench.recorder import Recorder
from vgbench.runtime import available_cores, configure_threads, resolve_device, seed_everything, threads_per_job

log = logging.getLogger(__name__)

LossFunction = Callable[..., Tensor]


def quadratic_cost(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """C = 1/2 ||softmax(z) - onehot(y)||^2 per example: the quadratic cost of textbook treatments."""
    probabilities = torch.softmax(logits, dim=1)
    per_example = 0.5 * (probabilities - F.one_hot(target, logits.shape[1])).pow(2).sum(dim=1)
    return per_example.sum() if reduction == "sum" else per_example.mean()


LOSS_FUNCTIONS: dict[str, LossFunction] = {"cross_entropy": F.cross_entropy, "mse": quadratic_cost}


def build_optimizer(cfg: DictConfig, params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.name in ("sgd", "momentum"):  # momentum is SGD whose preset sets momentum (and nesterov)
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise ConfigError(f"optimizer.name={cfg.name!r} is not valid")


class MixedPrecision:
    """Autocast and, for fp16, gradient scaling; with amp=none both are no-ops."""

    def __init__(self, mode: str, device: torch.device) -> None:
        if mode == "fp16" and device.type != "cuda":
            raise ConfigError(f"trainer.amp='fp16' needs a CUDA device, not {device}; use bf16 or none")
        self.dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def loss_scale(self) -> float:
        """The factor fp16 scaling multiplies the loss (and so every backward signal) by; 1 otherwise."""
        return self.scaler.get_scale() if self.scaler.is_enabled() else 1.0

    def backward_and_step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int, loss_fn: LossFunction) -> tuple[float, float]:
    """Mean loss and accuracy over a split; one host sync at the end."""
    model.eval()
    loss_sum = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device)
    for x, y in zip(split.x.split(batch_size), split.y.split(batch_size), strict=False):
        logits = model(x)
        loss_sum += loss_fn(logits.float(), y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
    loss, accuracy = (torch.stack([loss_sum, correct]) / len(split)).tolist()
    return loss, accuracy


def train_epoch(
    model: nn.Module,
    train: Split,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFunction,
    precision: MixedPrecision,
    cfg: DictConfig,
    epoch: int,
    state: TrainState,
    monitor: GradientMonitor | None = None,
    recorder: Recorder | None = None,
) -> tuple[float, float]:
    """One pass over the training split. Returns (mean loss, accuracy); a non-finite loss ends it early.

    Divergence is checked at each log event (every `trainer.log_every_n_steps` steps): once the loss is
    NaN or infinite the running sum stays so, and checking per step would cost a host sync per step.
    On the steps the monitor measures (and the epoch's last step) its hooks are open for the forward
    and backward pass, and its measurement goes to the recorder.
    """
    model.train()
    device = train.x.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    num_batches = math.ceil(len(train) / cfg.data.batch_size)
    log_every = cfg.trainer.log_every_n_steps  # read once: a config lookup costs microseconds a step
    progress = tqdm(total=num_batches, desc=f"epoch {epoch + 1}/{cfg.trainer.epochs}", disable=None, leave=False)
    mean_loss = accuracy = float("nan")
    for batch, idx in enumerate(epoch_batches(len(train), cfg.data.batch_size, cfg.trainer.seed, epoch, device), 1):
        x, y = train.x[idx], train.y[idx]
        measuring = monitor is not None and (monitor.due(state.step) or batch == num_batches)
        with monitor.capture(monitor.histograms_due(state.step)) if measuring else contextlib.nullcontext():
            with precision.autocast():
                logits = model(x)
                loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            weights_before = monitor.snapshot_weights() if measuring else []
            loss_scale = precision.loss_scale() if measuring else 1.0
            precision.backward_and_step(loss, optimizer)
        if measuring:
            measurement = monitor.collect(state.step, weights_before, {"train/batch_loss": loss.detach()}, loss_scale)
            if recorder is not None:
                recorder.measurement(measurement, epoch + 1)
        state.step += 1

        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
        seen += len(y)
        if batch % log_every == 0 or batch == num_batches:
            mean_loss, accuracy = (torch.stack([loss_sum, correct]) / seen).tolist()  # the one host sync
            progress.update(batch - progress.n)
            progress.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{accuracy:.4f}")
            if not math.isfinite(mean_loss):
                break
    progress.close()
    return mean_loss, accuracy


def _trajectory_config(cfg: DictConfig) -> str:
    """The parts of the config that determine the training trajectory (what a resume must share)."""
    keep = {key: cfg[key] for key in ("activation", "model", "optimizer", "loss")}
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.pop("root")
    return json.dumps({**OmegaConf.to_container(DictConfig(keep), resolve=True), "data": data,
                       "seed": cfg.trainer.seed}, sort_keys=True)  # fmt: skip


def save_checkpoint(path: Path, cfg: DictConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                    precision: MixedPrecision, state: TrainState, recorder: Recorder) -> None:  # fmt: skip
    save_torch_atomic(path, {
        "trajectory_config": _trajectory_config(cfg),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": precision.scaler.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "history": state.history,
        "recorder": recorder.state(),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    })  # fmt: skip


def load_checkpoint(path: Path, cfg: DictConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                    precision: MixedPrecision) -> tuple[TrainState, dict[str, Any]]:  # fmt: skip
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint["trajectory_config"] != _trajectory_config(cfg):
        raise ConfigError(
            f"{path} was written by a different config (model, data, optimizer, loss or seed differ); "
            "resume with the same overrides, or set trainer.resume=false and use another run folder"
        )
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    precision.scaler.load_state_dict(checkpoint["scaler"])
    torch.set_rng_state(checkpoint["cpu_rng"])
    if checkpoint["cuda_rng"]:
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
    return TrainState(checkpoint["epoch"], checkpoint["step"], checkpoint["history"]), checkpoint["recorder"]


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    """The knobs a sweep varies, as TensorBoard's HParams table shows them."""
    width = cfg.model.width
    return {
        "activation": cfg.activation.name,
        "depth": cfg.model.depth,
        "width": width if isinstance(width, int) else str(list(width)),
        "init": cfg.model.init,
        "optimizer": cfg.optimizer.name,
        "lr": cfg.optimizer.lr,
        "loss": cfg.loss,
        "seed": cfg.trainer.seed,
    }


def completed_summary(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The run folder's summary if it records this very run (same trajectory, all epochs) as completed."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    done = summary.get("status") == "completed" and summary.get("epochs_done") == cfg.trainer.epochs
    return (
        summary if done and _trajectory_config(OmegaConf.create(summary["config"])) == _trajectory_config(cfg) else None
    )


def run(
    cfg: DictConfig, run_dir: Path, launcher_threads: int | None = None, job_num: int | None = None
) -> dict[str, Any]:
    """Train as `cfg` says, write `summary.json` (and checkpoints) into `run_dir`, return the summary.

    launcher_threads / job_num: set by a parallel sweep's launcher (threads per job, this job's number).
    """
    started = time.perf_counter()
    validate(cfg)
    if cfg.trainer.skip_completed and (done := completed_summary(cfg, run_dir)) is not None:
        log.info("%s already records this run as completed; skipping it (trainer.skip_completed)", run_dir)
        return done
    device = resolve_device(cfg.trainer.device, job_num)
    threads = configure_threads(cfg.trainer.cpu_threads, launcher_threads)
    precision = MixedPrecision(cfg.trainer.amp, device)
    checkpoint_path = run_dir / "checkpoint.pt"
    if checkpoint_path.exists() and not cfg.trainer.resume:
        raise ConfigError(
            f"{checkpoint_path} exists; set trainer.resume=true to continue it, or use another run folder"
        )
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)

    data: Data = load_data(cfg.data, cfg.trainer.seed, device)
    log.info("data: %s (%d train, %d test) from %s", cfg.data.name, len(data.train), len(data.test), data.source)
    model = build_model(cfg.model, cfg.activation, data.num_features, data.num_classes).to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    loss_fn = LOSS_FUNCTIONS[cfg.loss]
    state, recorded = TrainState(), None
    resuming = cfg.trainer.resume and checkpoint_path.exists()
    if resuming:
        state, recorded = load_checkpoint(checkpoint_path, cfg, model, optimizer, precision)
        log.info("resumed from %s after epoch %d", checkpoint_path, state.epoch)
    log.info("model: %s on %s (%d torch threads)", model, device, threads)
    monitor = None
    if cfg.monitor.enabled:
        monitor = GradientMonitor(model, cfg.monitor.every_n_steps, cfg.monitor.histogram_every_n_steps)
    recorder = Recorder(run_dir, len(model.linears()), cfg.logger.tensorboard, recorded,
                        resume_step=state.step if resuming else None)  # fmt: skip

    status = "completed"
    steps_before = state.step
    train_started = time.perf_counter()
    for epoch in range(state.epoch, cfg.trainer.epochs):
        train_loss, train_acc = train_epoch(
            model, data.train, optimizer, loss_fn, precision, cfg, epoch, state, monitor, recorder
        )
        if not math.isfinite(train_loss):
            status = "diverged"
            log.warning("epoch %d: the training loss is %s; stopping (status: diverged)", epoch + 1, train_loss)
            break
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc}
        if (epoch + 1) % cfg.trainer.eval_every == 0 or epoch + 1 == cfg.trainer.epochs:
            split_name, split = data.held_out
            held_out_loss, held_out_acc = evaluate(model, split, cfg.data.eval_batch_size, loss_fn)
            record |= {f"{split_name}_loss": held_out_loss, f"{split_name}_acc": held_out_acc}
        state.history.append(record)
        state.epoch = epoch + 1
        log.info("epoch %d/%d: %s", epoch + 1, cfg.trainer.epochs,
                 ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))  # fmt: skip
        recorder.epoch_end(state.step, record, optimizer.param_groups[0]["lr"])
        if cfg.trainer.checkpoint:
            save_checkpoint(checkpoint_path, cfg, model, optimizer, precision, state, recorder)
    train_seconds = time.perf_counter() - train_started

    test_loss, test_acc = evaluate(model, data.test, cfg.data.eval_batch_size, loss_fn)
    if not math.isfinite(test_loss):
        test_acc = float("nan")  # argmax over NaN outputs is no accuracy: stored as null
    final = {"test_loss": test_loss, "test_acc": test_acc}
    if state.history:
        final |= {k: v for k, v in state.history[-1].items() if k != "epoch"}
    summary = {
        "status": status,
        "final": final,
        "epochs_done": state.epoch,
        "steps": state.step,
        "history": state.history,
        "wall_time_s": time.perf_counter() - started,
        "steps_per_s": (state.step - steps_before) / train_seconds if train_seconds > 0 else None,
        "device": str(device),
        "cpu_threads": threads,
        "torch_version": torch.__version__,
        "data_source": data.source,
        "first_to_last_grad_ratio": {"step0": recorder.ratio("step0"), "final": recorder.ratio("final")},
        "profile": recorder.profiles,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    recorder.finish(_hparams(cfg), {
        "hparams/test_acc": test_acc,
        "hparams/train_loss": final.get("train_loss", float("nan")),
        "hparams/first_to_last_grad_ratio_step0": recorder.ratio("step0") or float("nan"),
        "hparams/first_to_last_grad_ratio_final": recorder.ratio("final") or float("nan"),
    })  # fmt: skip
    write_json_atomic(run_dir / "summary.json", summary)
    log.info("%s: test accuracy %.4f, test loss %.4f (summary: %s)", status, test_acc, test_loss,
             run_dir / "summary.json")  # fmt: skip
    return summary


def run_job(cfg: DictConfig) -> float | None:
    """One job of the app (`vgbench.app`). In a sweep (multirun) a failing run records `status: failed` in
    its summary.json and returns, so the sweep's other runs go on and the report shows the failure;
    alone it exits non-zero.
    """
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    launcher = OmegaConf.to_container(hydra_cfg.launcher, resolve=True)
    try:
        summary = run(cfg, run_dir, threads_per_job(launcher, available_cores()) if in_sweep else None,
                      hydra_cfg.job.num if in_sweep else None)  # fmt: skip
    except Exception as error:
        message = f"{type(error).__name__}: {error}" if not isinstance(error, ConfigError) else str(error)
        write_json_atomic(run_dir / "summary.json", {
            "status": "failed",
            "error": message,
            "config": OmegaConf.to_container(cfg, resolve=True),
        })  # fmt: skip
        if in_sweep:  # a bad value is one line; anything else keeps its traceback in the job's log
            log.error("run failed (status: failed); the sweep goes on: %s", message,
                      exc_info=not isinstance(error, ConfigError))  # fmt: skip
            return None
        if isinstance(error, ConfigError):
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        raise
    print(
        f"test accuracy: {summary['final']['test_acc']:.4f} ({summary['status']}); summary: {run_dir / 'summary.json'}"
    )
    if summary["status"] == "diverged" and cfg.trainer.fail_on_divergence:
        sys.exit(1)
    return summary["final"]["test_acc"]


if __name__ == "__main__":  # python -m vgbench.train: the same app as vgbench-train
    from vgbench.app import main

    main()
