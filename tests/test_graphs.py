"""vgbench.graphs: which steps a CUDA graph can replay, and (on a GPU) that a replayed step is the step."""

import json
import logging

import pytest
import torch

from tests.conftest import TINY, make_cfg, read_rows
from vgbench.checkpoint import RunFolder
from vgbench.config import run_identity, stack_key
from vgbench.graphs import CaptureError, why_not_graphed, will_graph
from vgbench.jobs import train_jobs
from vgbench.placement import Placement
from vgbench.train import fit, run, setup, summarize, train_step

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
    """Stands in for vgbench.graphs.GraphedStep on the CPU: takes the step, and leaves the optimizer's
    step count to the trainer as a replay does. `fail_first`: the first call fails as a capture would."""

    def __init__(self, stack, fail_first: bool = False) -> None:
        self.stack, self.fail_first, self.steps, self.resets, self.replays = stack, fail_first, [], [], 0

    def __call__(self, indices: torch.Tensor) -> bool:
        if self.fail_first:
            self.stack.optimizer.steps += 1  # as far as a failed capture's Python may have gone
            raise CaptureError("operation not permitted when stream is capturing")
        count = self.stack.optimizer.steps
        train_step(self.stack, indices)
        self.stack.optimizer.steps = count
        self.steps.append(self.stack.step)
        self.replays += 1
        return True

    def reset(self, runs: int) -> None:
        self.resets.append(runs)


def stack_of(folder, graphed: bool = False, fail_first: bool = False, lrs=(0.05, 0.1)):
    cfgs = [
        make_cfg(*GRAPHED, "trainer.device=cpu", f"trainer.seed={k}", f"optimizer.lr={lr}") for k, lr in enumerate(lrs)
    ]
    stack = setup([RunFolder(folder / str(k)) for k in range(len(cfgs))], cfgs, Placement(progress=False))
    if graphed:
        stack.graphed = ReplayOpByOp(stack, fail_first)
    fit(stack)
    return stack


def test_the_graph_takes_the_unmeasured_full_batches_and_the_trainer_counts_them(tmp_path):
    graphed, plain = stack_of(tmp_path / "graphed", graphed=True), stack_of(tmp_path / "plain")
    assert graphed.graphed.steps == [1, 2, 3, 6, 7, 9, 10]  # not 0, 4, 8 (measured), nor 5, 11 (smaller, measured)
    assert graphed.optimizer.steps == plain.optimizer.steps == 12
    assert graphed.graphed_steps == 7 and plain.graphed_steps == 0
    assert summarize(graphed)[0]["graphed_steps"] == 7
    assert [r.history for r in graphed.runs] == [r.history for r in plain.runs]


def test_a_step_that_cannot_be_captured_goes_op_by_op(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="vgbench.train"):
        graphed = stack_of(tmp_path / "graphed", graphed=True, fail_first=True)
    assert "the step could not be captured (operation not permitted when stream is capturing)" in caplog.text
    assert graphed.graphed is None and graphed.optimizer.steps == 12 and graphed.graphed_steps == 0
    plain = stack_of(tmp_path / "plain")
    assert [r.history for r in graphed.runs] == [r.history for r in plain.runs]


def test_a_run_leaving_the_stack_makes_the_graph_start_again(tmp_path):
    graphed = stack_of(tmp_path / "graphed", graphed=True, lrs=(0.05, 1e12, 0.02))
    assert [run.diverged for run in graphed.runs] == [False, True, False]
    assert graphed.graphed.resets == [2]
    plain = stack_of(tmp_path / "plain", lrs=(0.05, 1e12, 0.02))
    assert [r.history for r in graphed.runs] == [r.history for r in plain.runs]


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
    assert graphed.graphed is not None and graphed.graphed.captures == 1 and plain.graphed is None
    assert graphed.optimizer.steps == plain.optimizer.steps == graphed.step == 12
    assert graphed.graphed_steps == 5  # of the 7 full, unmeasured batches, 2 warmed up
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
def test_on_cuda_steps_are_graphed_by_default_where_they_can_be(tmp_path, caplog):
    def stack(*overrides: str):  # a Stack
        cfg = make_cfg(*GRAPHED, "trainer.device=cuda", *overrides)
        return setup([RunFolder(tmp_path / "_".join(overrides))], [cfg], Placement(progress=False))

    with caplog.at_level(logging.WARNING, logger="vgbench.train"):
        assert stack().graphed is not None
        assert stack("optimizer=adam").graphed is None  # quietly: it was not asked for by name
        assert stack("trainer.cuda_graphs=false").graphed is None
    assert "cuda_graphs" not in caplog.text


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_graphed_stack_recaptures_when_a_run_diverges(tmp_path):
    """The diverged run is found at the first epoch's end (the log event), after the first capture."""
    graphed = trained("sgd", tmp_path / "graphed", True, lrs=(0.05, 1e12, 0.02))
    plain = trained("sgd", tmp_path / "plain", False, lrs=(0.05, 1e12, 0.02))
    assert [run.diverged for run in graphed.runs] == [run.diverged for run in plain.runs] == [False, True, False]
    assert graphed.graphed.captures == 2  # the stack of three in epoch 1, then of two in epoch 2
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
