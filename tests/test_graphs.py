"""vgbench.graphs: which steps a CUDA graph can replay, and (on a GPU) that a replayed step is the step."""

import json
import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.conftest import TINY, make_cfg, read_rows
from vgbench.checkpoint import RunFolder
from vgbench.config import run_identity, stack_key
from vgbench.graphs import CaptureError, why_not_graphed, will_graph
from vgbench.jobs import train_jobs
from vgbench.model import Trace
from vgbench.placement import Placement
from vgbench.train import device_step, fit, run, setup, summarize

CUDA = torch.device("cuda")

# 2 epochs of 5 full batches and a smaller one (12 steps); the monitor measures steps 0, 4, 8 and each
# epoch's last (5, 11) op by op; of the others, 2 warm up, then one graph is captured and replayed
GRAPHED = [
    "data=synthetic",
    "data.num_train=384",
    "data.val_size=32",
    "data.num_test=128",
    "model.width=32",
    "model.depth=3",
    "trainer.epochs=2",
    "monitor.every_n_steps=4",
    "logger.tensorboard=false",
]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ([], None),
        (["optimizer=momentum", "model.norm=batchnorm", "loss=mse"], None),
        (["optimizer=rmsprop", "optimizer.momentum=0.5", "model.norm=layernorm", "model.residual=true"], None),
        (["trainer.amp=bf16"], None),
        (["trainer.amp=fp16"], "trainer.amp=fp16: the loss scaler reads its overflow flag on the host every step"),
        (["optimizer=adam"], "optimizer=adam: its bias corrections come from the host's step count"),
        (["model.dropout=0.1"], "model.dropout > 0: each run's masks come from its own generator"),
    ],
)
def test_which_steps_a_cuda_graph_can_replay(overrides, reason):
    cfg = make_cfg(*TINY, *overrides)  # trainer.cuda_graphs=null: wherever it can
    assert why_not_graphed(cfg, CUDA) == reason
    assert will_graph(cfg, CUDA) == (reason is None)
    assert why_not_graphed(cfg, torch.device("cpu")) == "CUDA graphs need a CUDA device, not cpu"
    assert not will_graph(cfg, torch.device("cpu"))
    assert will_graph(make_cfg(*TINY, *overrides, "trainer.cuda_graphs=true"), CUDA) == (reason is None)
    assert not will_graph(make_cfg(*TINY, *overrides, "trainer.cuda_graphs=false"), CUDA)


def test_cuda_graphs_are_placement_not_identity():
    """Replayed or launched op by op, a step computes the same: the switch neither makes another run
    (resume, skip-completed) nor splits a stack."""
    plain, graphed = make_cfg(*TINY), make_cfg(*TINY, "trainer.cuda_graphs=true")
    assert run_identity(plain) == run_identity(graphed) and stack_key(plain) == stack_key(graphed)


def test_on_the_cpu_the_switch_says_so_and_changes_nothing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="vgbench.train"):
        graphed = run(make_cfg(*TINY, "trainer.cuda_graphs=true"), tmp_path / "graphed")
    assert "trainer.cuda_graphs: CUDA graphs need a CUDA device, not cpu; each step is launched op by op" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vgbench.train"):
        plain = run(make_cfg(*TINY), tmp_path / "plain")  # the default: graphs wherever they can be, quietly
    assert "cuda_graphs" not in caplog.text
    assert graphed["history"] == plain["history"] and graphed["final"] == plain["final"]


class ReplayOpByOp:
    """Stands in for vgbench.graphs.GraphedStep on the CPU: runs its step, writes what the step returns into
    the one `output` tensor (as a replay does: the caller must read it before the next call), and leaves the
    optimizer's step count to the trainer as a replay does. `fail_first`: the first call fails as a capture
    would."""

    def __init__(self, stack, step, fail_first: bool = False) -> None:
        self.stack, self.step, self.fail_first = stack, step, fail_first
        self.steps, self.resets, self.replays, self.output = [], [], 0, None

    def __call__(self, indices: torch.Tensor) -> bool:
        if self.fail_first:
            self.stack.optimizer.steps += 1  # as far as a failed capture's Python may have gone
            raise CaptureError("operation not permitted when stream is capturing")
        count = self.stack.optimizer.steps
        result = self.step(indices)
        if result is not None and self.output is not None:
            self.output.copy_(result)
        elif result is not None:
            self.output = result.clone()
        self.stack.optimizer.steps = count
        self.steps.append(self.stack.step)
        self.replays += 1
        return True

    def reset(self, runs: int) -> None:
        self.resets.append(runs)
        self.output = None  # a new capture: a new output tensor


def stack_of(folder, graphed: bool = False, fail_first: str = "", lrs=(0.05, 0.1), overrides=()):
    cfgs = [
        make_cfg(*GRAPHED, "trainer.device=cpu", f"trainer.seed={k}", f"optimizer.lr={lr}", *overrides)
        for k, lr in enumerate(lrs)
    ]
    stack = setup([RunFolder(folder / str(k)) for k in range(len(cfgs))], cfgs, Placement(progress=False))
    if graphed:
        steps = {"plain": lambda idx: device_step(stack, idx), "measured": lambda idx: device_step(stack, idx, Trace())}
        stack.graphs = {kind: ReplayOpByOp(stack, step, fail_first == kind) for kind, step in steps.items()}
    fit(stack)
    return stack


def tables(stack):  # each run's layers.csv and steps.csv (a diverged run's are written when it is summarised)
    names = ("layers.csv", "steps.csv")
    return [[(run.run_dir / name).read_text() for name in names] for run in stack.runs if not run.diverged]


def test_the_graphs_take_the_full_batches_and_the_trainer_counts_them(tmp_path):
    graphed, plain = stack_of(tmp_path / "graphed", graphed=True), stack_of(tmp_path / "plain")
    assert graphed.graphs["plain"].steps == [1, 2, 3, 6, 7, 9, 10]  # not the measured 0, 4, 8 nor the smaller 5, 11
    assert graphed.graphs["measured"].steps == [0, 4, 8]  # not the smaller 5 and 11
    assert graphed.optimizer.steps == plain.optimizer.steps == 12
    assert graphed.graphed_steps == 10 and plain.graphed_steps == 0
    assert summarize(graphed)[0]["graphed_steps"] == 10
    assert [r.history for r in graphed.runs] == [r.history for r in plain.runs]
    # each measured step's table is recorded under its own step and epoch, for each run
    assert tables(graphed) == tables(plain)
    assert [row["step"] for row in read_rows(graphed.runs[1].run_dir / "steps.csv")] == ["0", "4", "5", "8", "11"]


def test_measured_steps_with_histograms_or_the_jacobian_go_op_by_op(tmp_path):
    def measured_graph_steps(*overrides: str) -> list[int]:
        return stack_of(tmp_path / "_".join(overrides), graphed=True, overrides=overrides).graphs["measured"].steps

    histograms = ["logger.tensorboard=true", "monitor.histogram_every_n_steps=8"]
    assert measured_graph_steps(*histograms) == [4]  # 0 and 8 have histograms
    # histograms go to TensorBoard only: without it there are none to take
    assert measured_graph_steps("logger.tensorboard=false", "monitor.histogram_every_n_steps=8") == [0, 4, 8]
    assert measured_graph_steps("monitor.jacobian=true") == [4, 8]
    jacobian = stack_of(tmp_path / "jacobian", overrides=["monitor.jacobian=true"])
    assert all(run.recorder.jacobian is not None for run in jacobian.runs)


@pytest.mark.parametrize("kind", ["plain", "measured"])
def test_a_step_that_cannot_be_captured_goes_op_by_op(tmp_path, caplog, kind):
    with caplog.at_level(logging.WARNING, logger="vgbench.train"):
        graphed = stack_of(tmp_path / "graphed", graphed=True, fail_first=kind)
    message = f"the {kind} step could not be captured (operation not permitted when stream is capturing)"
    assert message in caplog.text
    assert kind not in graphed.graphs and graphed.optimizer.steps == 12
    other = "measured" if kind == "plain" else "plain"
    assert graphed.graphed_steps == len(graphed.graphs[other].steps) > 0  # the other kind is still replayed
    plain = stack_of(tmp_path / "plain")
    assert [r.history for r in graphed.runs] == [r.history for r in plain.runs]
    assert tables(graphed) == tables(plain)


def test_a_run_leaving_the_stack_makes_the_graphs_start_again(tmp_path):
    graphed = stack_of(tmp_path / "graphed", graphed=True, lrs=(0.05, 1e12, 0.02))
    assert [run.diverged for run in graphed.runs] == [False, True, False]
    assert graphed.graphs["plain"].resets == graphed.graphs["measured"].resets == [2]
    plain = stack_of(tmp_path / "plain", lrs=(0.05, 1e12, 0.02))
    assert [r.history for r in graphed.runs] == [r.history for r in plain.runs]
    assert tables(graphed) == tables(plain)


HOST_READS = {"aten._local_scalar_dense.default", "aten.lift_fresh.default", "aten.nonzero.default"}


class HostReads(TorchDispatchMode):
    """The operations that would wait for the host on a GPU, or copy from it (which a capture refuses)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in HOST_READS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["optimizer=momentum", "model.norm=batchnorm", "model.width=[32,16,32]"],
        ["optimizer=rmsprop", "optimizer.momentum=0.5", "model.norm=layernorm", "model.residual=true", "loss=mse"],
        ["trainer.amp=bf16", "activation=tanh", "optimizer=momentum", "optimizer.nesterov=true"],
        ["activation=custom", "activation.target=tests.custom_activations.scaled_softsign"],  # f' by autograd
    ],
)
def test_a_measured_steps_device_part_never_reads_from_the_host(tmp_path, overrides):
    """What the measured step's graph captures (vgbench.train.device_step with a trace) holds no host read or
    copy: on a GPU each would end the capture (CaptureError) and the monitor's steps would go op by op."""
    stack = stack_of(tmp_path / "stack", overrides=[*overrides, "trainer.epochs=1"])
    idx = torch.arange(64).view(1, 64).expand(len(stack.training), -1)
    with HostReads() as reads:
        table = device_step(stack, idx, Trace())
    assert reads.seen == [] and table.shape[1] == len(stack.training)
    with HostReads() as reads:  # the detector sees what it looks for
        float(table.sum()), torch.tensor([1, 2]), torch.nonzero(table)
    assert set(reads.seen) == HOST_READS


# --- on a GPU (scripts/gpu_check.sh runs these) ---

SHAPES = {
    "sgd": [],
    "momentum_batchnorm": ["optimizer=momentum", "model.norm=batchnorm"],
    "rmsprop_layernorm_mse_bf16": [
        "optimizer=rmsprop",
        "optimizer.momentum=0.5",
        "model.norm=layernorm",
        "model.residual=true",
        "loss=mse",
        "trainer.amp=bf16",
    ],
}


def on_cuda(shape: str, graphs: bool, *overrides: str):  # a DictConfig
    return make_cfg(
        *GRAPHED, *SHAPES[shape], "trainer.device=cuda", f"trainer.cuda_graphs={str(graphs).lower()}", *overrides
    )


def trained(shape: str, folder, graphs: bool, lrs=(0.05, 0.1, 0.02)):  # a path, a Stack
    cfgs = [on_cuda(shape, graphs, f"trainer.seed={k}", f"optimizer.lr={lr}") for k, lr in enumerate(lrs)]
    stack = setup([RunFolder(folder / str(k)) for k in range(len(cfgs))], cfgs, Placement(progress=False))
    fit(stack)
    summarize(stack)
    return stack


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("shape", ["momentum_batchnorm", "rmsprop_layernorm_mse_bf16"])
def test_a_replayed_step_is_the_step_launched_op_by_op(shape, tmp_path):
    graphed, plain = trained(shape, tmp_path / "graphed", True), trained(shape, tmp_path / "plain", False)
    assert graphed.graphs["plain"].captures == graphed.graphs["measured"].captures == 1 and plain.graphs == {}
    assert graphed.optimizer.steps == plain.optimizer.steps == graphed.step == 12
    # of the 7 full, unmeasured batches, 2 warmed up; of the 3 measured (0, 4, 8: no TensorBoard, no
    # histograms), 2 warmed up
    assert graphed.graphed_steps == 5 + 1
    for k in range(3):
        a, b = (json.loads((tmp_path / side / str(k) / "summary.json").read_text()) for side in ("graphed", "plain"))
        assert [h["train_loss"] for h in a["history"]] == pytest.approx(
            [h["train_loss"] for h in b["history"]], rel=1e-5
        )
        assert a["final"]["test_acc"] == pytest.approx(b["final"]["test_acc"], abs=1e-3)
        rows_a, rows_b = (read_rows(tmp_path / side / str(k) / "steps.csv") for side in ("graphed", "plain"))
        assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b] == ["0", "4", "5", "8", "11"]
        assert [float(r["train/batch_loss"]) for r in rows_a] == pytest.approx(
            [float(r["train/batch_loss"]) for r in rows_b], rel=1e-5
        )
    for p, q in zip(graphed.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("shape", ["sgd", "momentum_batchnorm", "rmsprop_layernorm_mse_bf16"])
def test_measured_steps_replayed_from_their_graph_measure_what_op_by_op_measures(shape, tmp_path):
    """Every step measured (no histograms): of the 10 full batches, 2 warm the measured graph up, 1 is
    captured and replayed, 7 only replayed; each step's statistics equal those of the same steps op by op."""
    every = ["monitor.every_n_steps=1", "monitor.histogram_every_n_steps=0"]
    cfgs = {
        side: [on_cuda(shape, graphs, f"trainer.seed={k}", f"optimizer.lr={lr}", *every) for k, lr in enumerate(lrs)]
        for side, graphs, lrs in (("graphed", True, (0.05, 0.1)), ("plain", False, (0.05, 0.1)))
    }
    stacks = {}
    for side, side_cfgs in cfgs.items():
        folders = [RunFolder(tmp_path / side / str(k)) for k in range(len(side_cfgs))]
        stacks[side] = setup(folders, side_cfgs, Placement(progress=False))
        fit(stacks[side])
        summarize(stacks[side])
    graphed = stacks["graphed"]
    assert graphed.graphs["measured"].captures == 1 and "plain" in graphed.graphs
    assert graphed.graphed_steps == 8 and graphed.optimizer.steps == stacks["plain"].optimizer.steps == 12
    for k in range(2):
        for name in ("layers.csv", "steps.csv"):
            rows_a, rows_b = (read_rows(tmp_path / side / str(k) / name) for side in ("graphed", "plain"))
            assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b] and len(rows_a) >= 12
            for a, b in zip(rows_a, rows_b, strict=True):
                for column, value in a.items():
                    if column in ("step", "epoch", "layer", "kind") or value == "":
                        assert value == b[column], (name, column)
                    else:
                        assert float(value) == pytest.approx(float(b[column]), rel=1e-4, abs=1e-7), (name, column)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_steps_are_graphed_by_default_where_they_can_be(tmp_path, caplog):
    def stack(*overrides: str):  # a Stack
        cfg = make_cfg(*GRAPHED, "trainer.device=cuda", *overrides)
        return setup([RunFolder(tmp_path / "_".join(overrides))], [cfg], Placement(progress=False))

    with caplog.at_level(logging.WARNING, logger="vgbench.train"):
        assert set(stack().graphs) == {"plain", "measured"}
        assert set(stack("monitor.enabled=false").graphs) == {"plain"}
        assert stack("optimizer=adam").graphs == {}  # quietly: it was not asked for by name
        assert stack("trainer.cuda_graphs=false").graphs == {}
    assert "cuda_graphs" not in caplog.text


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_graphed_stack_recaptures_when_a_run_diverges(tmp_path):
    """The diverged run is found at the first epoch's end (the log event), after the first capture."""
    graphed = trained("sgd", tmp_path / "graphed", True, lrs=(0.05, 1e12, 0.02))
    plain = trained("sgd", tmp_path / "plain", False, lrs=(0.05, 1e12, 0.02))
    assert [run.diverged for run in graphed.runs] == [run.diverged for run in plain.runs] == [False, True, False]
    assert graphed.graphs["plain"].captures == 2  # the stack of three in epoch 1, then of two in epoch 2
    for k in (0, 2):
        a, b = (json.loads((tmp_path / side / str(k) / "summary.json").read_text()) for side in ("graphed", "plain"))
        assert [h["train_loss"] for h in a["history"]] == pytest.approx(
            [h["train_loss"] for h in b["history"]], rel=1e-5
        )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_graphed_stack_resumes_as_it_would_have_gone_on(tmp_path):
    straight = train_jobs(
        [on_cuda("momentum_batchnorm", True, f"trainer.seed={k}") for k in range(2)],
        [tmp_path / "straight" / str(k) for k in range(2)],
    )
    folders = [tmp_path / "resumed" / str(k) for k in range(2)]
    train_jobs(
        [on_cuda("momentum_batchnorm", True, f"trainer.seed={k}", "trainer.epochs=1") for k in range(2)], folders
    )  # cut off after epoch 1
    resumed = train_jobs(
        [on_cuda("momentum_batchnorm", True, f"trainer.seed={k}", "trainer.resume=true") for k in range(2)], folders
    )
    assert [r.status for r in straight] == [r.status for r in resumed] == ["completed"] * 2
    for k in range(2):
        a, b = (json.loads((tmp_path / side / str(k) / "summary.json").read_text()) for side in ("straight", "resumed"))
        assert a["steps"] == b["steps"] == 12
        assert [h["train_loss"] for h in a["history"]] == pytest.approx(
            [h["train_loss"] for h in b["history"]], rel=1e-5
        )
