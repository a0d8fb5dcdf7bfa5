import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, make_cfg, read_rows, run_app
from vgbench.checkpoint import RunFolder
from vgbench.jobs import train_jobs
from vgbench.placement import Placement
from vgbench.provision import ProvisionError
from vgbench.train import BATCH_LOSS, deliver, run, setup, train_step


def read_rows_text(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.slow
def test_end_to_end_app_writes_summary(tmp_path):
    result = run_app(*TINY, "trainer.epochs=2", "data.val_size=128", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "test accuracy:" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_done"] == 2 and summary["steps"] == 2 * math.ceil(384 / 64)
    assert summary["final"]["test_acc"] > 0.95  # chance is 0.1; two epochs reach 1.0 on this problem
    assert summary["final"]["train_loss"] < 0.2 < summary["history"][0]["train_loss"]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"} <= set(summary["final"])
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert summary["device"] == "cpu" and summary["data_source"] == "synthetic" and summary["stack_size"] == 1
    assert summary["torch_version"] == torch.__version__ and summary["steps_per_s"] > 0
    assert summary["config"]["model"]["width"] == 32  # the resolved config
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / ".hydra" / "config.yaml").exists()
    assert "epoch 2/2" in (tmp_path / "train.log").read_text()


@pytest.mark.slow
def test_app_and_console_script_run_from_another_folder(tmp_path):
    result = run_app(*TINY, "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'module'}", cwd=tmp_path, module="vgbench")
    assert result.returncode == 0, result.stderr
    script = Path(sys.executable).parent / "vgbench-train"
    result = subprocess.run(
        [script, *TINY, "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'script'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "module" / "summary.json").exists() and (tmp_path / "script" / "summary.json").exists()


def test_same_seed_same_numbers(tmp_path):
    cfg = make_cfg(*TINY, "trainer.epochs=2", "model.dropout=0.1")
    first, second = run(cfg, tmp_path / "a"), run(cfg, tmp_path / "b")
    assert first["history"] == second["history"] and first["final"] == second["final"]
    third = run(make_cfg(*TINY, "trainer.epochs=2", "model.dropout=0.1", "trainer.seed=1"), tmp_path / "c")
    assert third["history"] != first["history"]


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    common = [*TINY, "model.dropout=0.2", "optimizer=adam", "data.val_size=64"]  # dropout masks, Adam state
    uninterrupted = run(make_cfg(*common, "trainer.epochs=3"), tmp_path / "straight")
    run(make_cfg(*common, "trainer.epochs=1"), tmp_path / "resumed")  # "interrupted" after epoch 1
    resumed = run(make_cfg(*common, "trainer.epochs=3", "trainer.resume=true"), tmp_path / "resumed")
    assert resumed["history"] == uninterrupted["history"]
    assert resumed["final"] == uninterrupted["final"]
    assert resumed["steps"] == uninterrupted["steps"]


def test_eval_every_evaluates_every_nth_epoch_and_the_last(tmp_path):
    summary = run(make_cfg(*TINY, "trainer.epochs=5", "trainer.eval_every=2"), tmp_path)
    assert ["test_acc" in record for record in summary["history"]] == [False, True, False, True, True]


@pytest.mark.slow
def test_deterministic_mode_does_not_leak_into_the_next_job(tmp_path):
    run(make_cfg(*TINY, "trainer.deterministic=true"), tmp_path / "a")
    assert torch.are_deterministic_algorithms_enabled()
    run(make_cfg(*TINY), tmp_path / "b")
    assert not torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # set before any job could start CUDA


@pytest.mark.slow
def test_huge_lr_diverges_cleanly(tmp_path):
    result = run_app(*TINY, "optimizer.lr=1e12", "trainer.log_every_n_steps=1", f"hydra.run.dir={tmp_path / 'a'}")
    assert result.returncode == 0, result.stderr  # a sweep goes on
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["epochs_done"] == 0 and summary["final"]["test_loss"] is None  # NaN is stored as null
    assert summary["final"]["test_acc"] is None
    strict = run_app(*TINY, "optimizer.lr=1e12", "trainer.fail_on_divergence=true", f"hydra.run.dir={tmp_path / 'b'}")
    assert strict.returncode == 1


# --- a stack of runs is K runs alone (issue: stacked sweeps) ---

STACKED = [
    "data=synthetic",
    "data.num_train=3200",
    "data.num_test=256",
    "model.depth=3",
    "model.width=32",
    "trainer.device=cpu",
    "trainer.cpu_threads=1",
    "model.init=normal",
    "monitor.every_n_steps=1",
    "monitor.histogram_every_n_steps=0",
    "logger.tensorboard=false",
]
PER_RUN = [
    ["trainer.seed=0", "optimizer.lr=0.05", "model.init_std=0.05"],
    ["trainer.seed=1", "optimizer.lr=0.1", "model.init_std=0.08"],
    ["trainer.seed=2", "optimizer.lr=0.02", "model.init_std=0.1"],
    ["trainer.seed=3", "optimizer.lr=0.2", "model.init_std=0.03"],
]


def assert_same_run(a: Path, b: Path, loss_rtol: float = 1e-4, metric_rtol: float = 1e-5) -> None:
    steps_a, steps_b = read_rows(a / "steps.csv"), read_rows(b / "steps.csv")
    assert [r["step"] for r in steps_a] == [r["step"] for r in steps_b]
    losses_a = [float(r["train/batch_loss"]) for r in steps_a[:50]]
    assert len(losses_a) == 50
    assert losses_a == pytest.approx([float(r["train/batch_loss"]) for r in steps_b[:50]], rel=loss_rtol)
    step0 = [
        (r["layer"], k, float(v))
        for r in read_rows(a / "layers.csv")
        if r["step"] == "0"
        for k, v in r.items()
        if v and k not in ("step", "epoch", "layer", "kind")
    ]
    other = [
        (r["layer"], k, float(v))
        for r in read_rows(b / "layers.csv")
        if r["step"] == "0"
        for k, v in r.items()
        if v and k not in ("step", "epoch", "layer", "kind")
    ]
    assert [v for *_, v in step0] == pytest.approx([v for *_, v in other], rel=metric_rtol, abs=1e-12)
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert summary_a["final"]["test_acc"] == pytest.approx(summary_b["final"]["test_acc"], abs=0.01)


def test_each_run_of_a_stack_matches_the_run_alone(tmp_path):
    cfgs = [make_cfg(*STACKED, *per_run, "trainer.epochs=1") for per_run in PER_RUN]
    dirs = [tmp_path / "stack" / f"run{k}" for k in range(4)]
    results = train_jobs(cfgs, dirs)
    assert [r.status for r in results] == ["completed"] * 4 and {r.stack_size for r in results} == {4}
    for k, cfg in enumerate(cfgs):
        assert run(cfg, tmp_path / "alone" / f"run{k}")["stack_size"] == 1
        assert_same_run(dirs[k], tmp_path / "alone" / f"run{k}")
    losses = {read_rows(d / "steps.csv")[10]["train/batch_loss"] for d in dirs}
    assert len(losses) == 4  # the runs really differ


@pytest.mark.slow
def test_a_resumed_stack_matches_an_uninterrupted_one(tmp_path):
    straight = [tmp_path / "straight" / f"run{k}" for k in range(4)]
    resumed = [tmp_path / "resumed" / f"run{k}" for k in range(4)]
    train_jobs([make_cfg(*STACKED, *p, "trainer.epochs=2") for p in PER_RUN], straight)
    train_jobs([make_cfg(*STACKED, *p, "trainer.epochs=1") for p in PER_RUN], resumed)  # cut off after epoch 1
    results = train_jobs([make_cfg(*STACKED, *p, "trainer.epochs=2", "trainer.resume=true") for p in PER_RUN], resumed)
    assert {r.stack_size for r in results} == {4}
    for a, b in zip(straight, resumed, strict=True):
        assert_same_run(a, b, loss_rtol=0, metric_rtol=0)  # bit for bit
        assert (
            json.loads((a / "summary.json").read_text())["history"]
            == json.loads((b / "summary.json").read_text())["history"]
        )


def test_a_diverging_run_stops_and_its_stack_mates_go_on(tmp_path):
    cfgs = [
        make_cfg(*TINY, "trainer.log_every_n_steps=1", f"optimizer.lr={lr}", "trainer.epochs=2")
        for lr in (0.1, 1e12, 0.05)
    ]
    results = train_jobs(cfgs, [tmp_path / f"run{k}" for k in range(3)])
    assert [r.status for r in results] == ["completed", "diverged", "completed"]
    alone = run(cfgs[2], tmp_path / "alone")
    in_stack = json.loads((tmp_path / "run2" / "summary.json").read_text())["history"]
    assert [r["train_loss"] for r in in_stack] == pytest.approx([r["train_loss"] for r in alone["history"]], rel=1e-5)
    diverged = json.loads((tmp_path / "run1" / "summary.json").read_text())
    assert diverged["epochs_done"] == 0 and diverged["final"]["test_acc"] is None


# --- targets: the first step each held, and stop_at (vgbench.targets) ---

EVERY_STEP = [  # a slow learner (lr 0.01), a check and a measurement at every step
    *TINY,
    "optimizer.lr=0.01",
    "trainer.log_every_n_steps=1",
    "monitor.every_n_steps=1",
    "monitor.histogram_every_n_steps=0",
]


def batch_losses(run_dir: Path) -> list[float]:
    """The training loss of each step, as the monitor recorded it (monitor.every_n_steps=1)."""
    rows = read_rows(run_dir / "steps.csv")
    assert [int(r["step"]) for r in rows] == list(range(len(rows)))
    return [float(r["train/batch_loss"]) for r in rows]


def threshold_between(losses: list[float], low: float, high: float) -> float:
    """A loss threshold in (low, high) at least 1e-3 from every loss: no rounding can move its crossing."""
    values = sorted(v for v in losses if low < v < high)
    gap, below = max((b - a, a) for a, b in zip(values, values[1:], strict=False))
    assert gap > 2e-3
    return below + gap / 2


def first_step_below(losses: list[float], threshold: float) -> int:
    """The step count after the first step whose batch loss is at most `threshold` (1-based)."""
    return next(i + 1 for i, loss in enumerate(losses) if loss <= threshold)


def test_targets_record_the_first_step_they_held(tmp_path):
    reference = run(make_cfg(*EVERY_STEP, "trainer.epochs=3"), tmp_path / "reference")
    losses = batch_losses(tmp_path / "reference")
    threshold = threshold_between(losses, 0.2, 1.0)
    expected = first_step_below(losses, threshold)
    met_test = next(h for h in reference["history"] if h["test_acc"] >= 0.95)  # evaluated at each epoch's end
    summary = run(
        make_cfg(
            *EVERY_STEP, "trainer.epochs=3", f"trainer.targets=[train_loss:{threshold},test_acc:0.95,train_loss:1e-9]"
        ),
        tmp_path / "targets",
    )
    reached = summary["targets"]
    assert reached[f"train_loss<={threshold:g}"]["step"] == expected
    assert reached[f"train_loss<={threshold:g}"]["value"] == pytest.approx(losses[expected - 1], rel=1e-4)
    assert reached[f"train_loss<={threshold:g}"]["epoch"] == (expected - 1) // 8 + 1  # 512 / 64 = 8 steps an epoch
    assert reached["test_acc>=0.95"]["step"] == 8 * met_test["epoch"]
    assert reached["test_acc>=0.95"]["seconds"] >= reached[f"train_loss<={threshold:g}"]["seconds"] > 0
    assert reached["train_loss<=1e-09"] is None and summary["stopped_at"] is None
    assert summary["history"] == reference["history"]  # recording targets changes nothing


def test_stop_at_ends_the_run_where_it_holds_and_a_rerun_keeps_it(tmp_path):
    run(make_cfg(*EVERY_STEP, "trainer.epochs=3"), tmp_path / "reference")
    losses = batch_losses(tmp_path / "reference")
    threshold = threshold_between(losses, 0.3, 0.5)
    expected = first_step_below(losses, threshold)
    assert 8 < expected < 24 and expected % 8  # in the middle of epoch 2 or 3
    cfg = make_cfg(*EVERY_STEP, "trainer.epochs=3", f"trainer.stop_at=train_loss:{threshold}")
    summary = run(cfg, tmp_path / "stopped")
    assert summary["status"] == "completed" and summary["stopped_at"] == f"train_loss<={threshold:g}"
    assert summary["steps"] == expected and summary["epochs_done"] == (expected - 1) // 8
    assert summary["final"]["train_loss"] == pytest.approx(losses[expected - 1], rel=1e-4)  # the step it stopped at
    assert summary["final"]["test_acc"] > 0.9
    assert batch_losses(tmp_path / "stopped") == pytest.approx(losses[:expected], rel=1e-6)
    assert run(cfg, tmp_path / "stopped") == summary  # finished: a rerun skips it


def test_in_a_stack_each_run_stops_on_its_own_and_the_others_are_unchanged(tmp_path):
    common = [*EVERY_STEP, "model.dropout=0.1", "trainer.epochs=3"]  # dropout: each run's masks, kept
    per_run = [["optimizer.lr=0.02"], ["optimizer.lr=0.01", "trainer.seed=1"], ["optimizer.lr=0.005", "trainer.seed=2"]]
    alone = [tmp_path / "free" / f"run{k}" for k in range(3)]
    train_jobs([make_cfg(*common, *p) for p in per_run], alone)
    losses = batch_losses(alone[0])
    threshold = threshold_between(losses, 0.3, 1.0)
    expected = first_step_below(losses, threshold)
    assert min(batch_losses(alone[1])[:expected]) > threshold  # the others are not there yet
    stopping = [make_cfg(*common, *per_run[0], f"trainer.stop_at=train_loss:{threshold}")]
    stopping += [make_cfg(*common, *p) for p in per_run[1:]]
    dirs = [tmp_path / "stack" / f"run{k}" for k in range(3)]
    results = train_jobs(stopping, dirs)
    assert [r.status for r in results] == ["completed"] * 3 and {r.stack_size for r in results} == {3}
    stopped = json.loads((dirs[0] / "summary.json").read_text())
    assert stopped["stopped_at"] and stopped["steps"] == expected
    assert batch_losses(dirs[0]) == pytest.approx(losses[:expected], rel=1e-5)
    for free, mate in zip(alone[1:], dirs[1:], strict=True):
        assert batch_losses(mate) == pytest.approx(batch_losses(free), rel=1e-5)
        histories = [json.loads((d / "summary.json").read_text())["history"] for d in (free, mate)]
        assert [h["train_loss"] for h in histories[1]] == pytest.approx(
            [h["train_loss"] for h in histories[0]], rel=1e-5
        )


def test_a_resumed_run_keeps_the_step_and_seconds_at_which_it_met_a_target(tmp_path):
    common = [*EVERY_STEP, "trainer.targets=[train_loss:3.5,train_loss:0.5]"]
    straight = run(make_cfg(*common, "trainer.epochs=3"), tmp_path / "straight")
    first = run(make_cfg(*common, "trainer.epochs=1"), tmp_path / "resumed")  # "interrupted" after epoch 1
    resumed = run(make_cfg(*common, "trainer.epochs=3", "trainer.resume=true"), tmp_path / "resumed")
    early, late = first["targets"]["train_loss<=3.5"], straight["targets"]["train_loss<=0.5"]
    assert early["epoch"] == 1 and late["epoch"] > 1 and first["targets"]["train_loss<=0.5"] is None
    assert resumed["targets"]["train_loss<=3.5"] == early  # carried by the checkpoint, seconds and all
    assert {k: v for k, v in resumed["targets"]["train_loss<=0.5"].items() if k != "seconds"} == {
        k: v for k, v in late.items() if k != "seconds"
    }


# --- bad input and faults: one line, nothing lost ---


@pytest.mark.slow
def test_a_corrupt_checkpoint_is_one_line_and_the_completed_summary_survives(tmp_path):
    run(make_cfg(*TINY), tmp_path)
    summary_before = (tmp_path / "summary.json").read_text()
    (tmp_path / "checkpoint.pt").write_bytes(os.urandom(4096))
    result = run_app(*TINY, "trainer.epochs=2", "trainer.resume=true", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'checkpoint.pt'} cannot be read (")
    assert "truncated or corrupt" in result.stderr and result.stderr.count("\n") == 1
    assert (tmp_path / "summary.json").read_text() == summary_before  # never overwritten by a failed attempt
    attempt = json.loads((tmp_path / "failed_attempt.json").read_text())
    assert attempt["status"] == "failed" and "cannot be read" in attempt["error"]


def corrupt_mnist(root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / name).write_bytes(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    return raw


def test_corrupted_data_file_is_refused(tmp_path):
    raw = corrupt_mnist(tmp_path)
    with pytest.raises(ProvisionError, match="has MD5 .* expected 6bbc9ace"):
        run(make_cfg("data=mnist", f"data.root={tmp_path}", "trainer.device=cpu"), tmp_path / "run")
    assert (raw / "train-images-idx3-ubyte").read_bytes()[:4] == b"\x00\x00\x08\x01"  # left as it was


@pytest.mark.slow
def test_a_data_problem_is_one_line_and_exit_2(tmp_path):
    corrupt_mnist(tmp_path / "data")
    result = run_app(
        "data=mnist",
        "trainer.device=cpu",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"VGBENCH_DATA": str(tmp_path / "data")},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "has MD5" in result.stderr and result.stderr.count("\n") == 1
    assert "HYDRA_FULL_ERROR" not in result.stderr


def test_a_data_root_that_is_a_file(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(ProvisionError, match=r"data.root=.*data is a file, not a folder"):
        run(make_cfg("data=mnist", f"data.root={tmp_path / 'data'}", "trainer.device=cpu"), tmp_path / "run")


@pytest.mark.parametrize(
    ("optimizer", "loss"),
    [("sgd", "cross_entropy"), ("momentum", "cross_entropy"), ("adam", "cross_entropy"), ("rmsprop", "mse")],
)
def test_every_optimizer_and_loss_learns(tmp_path, optimizer, loss):
    """A harder synthetic problem (noise 4), 24 steps at each preset's rate: every optimizer at least halves
    its training loss (measured: to 0.04 to 0.4 of it) and passes 0.45 test accuracy (measured 0.49 for
    Adam's cautious 1e-3, 0.88 to 1.0 for the others; chance is 0.1). Their exact updates: test_optim.py."""
    summary = run(
        make_cfg(*TINY, f"optimizer={optimizer}", f"loss={loss}", "trainer.epochs=3", "data.noise=4"), tmp_path
    )
    history = summary["history"]
    assert summary["status"] == "completed"
    assert summary["final"]["test_acc"] > 0.45
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_cuda_run_with_amp_matches_the_cpu(tmp_path, amp):
    """On the GPU, each precision's step-0 statistics are finite and equal the CPU fp32 run's (same seed)."""
    common = [*TINY, "activation=tanh", "model.depth=4", "trainer.epochs=2"]
    cpu = run(make_cfg(*common), tmp_path / "cpu")
    cuda = run(make_cfg(*common, "trainer.device=cuda", f"trainer.amp={amp}"), tmp_path / amp)
    assert cuda["device"].startswith("cuda") and cuda["status"] == "completed"
    tolerance = 1e-3 if amp == "none" else 0.05
    for metric in ("grad_norm/weight", "delta_norm", "activation/std"):
        values = cuda["profile"]["step0"]["layers"][metric]
        assert all(math.isfinite(v) for v in values), metric
        assert values == pytest.approx(cpu["profile"]["step0"]["layers"][metric], rel=tolerance), metric
    assert cuda["final"]["test_acc"] == pytest.approx(cpu["final"]["test_acc"], abs=0.05)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_resume_matches_an_uninterrupted_run(tmp_path):
    common = [*TINY, "model.dropout=0.2", "optimizer=adam", "trainer.device=cuda"]
    straight = run(make_cfg(*common, "trainer.epochs=2"), tmp_path / "straight")
    run(make_cfg(*common, "trainer.epochs=1"), tmp_path / "resumed")
    resumed = run(make_cfg(*common, "trainer.epochs=2", "trainer.resume=true"), tmp_path / "resumed")
    assert [r["train_loss"] for r in resumed["history"]] == pytest.approx(
        [r["train_loss"] for r in straight["history"]], rel=1e-5
    )


@pytest.mark.mnist
@pytest.mark.slow
def test_real_mnist_one_epoch_relu(tmp_path):
    """The real data set through the provisioning routes: a small ReLU MLP learns it in one epoch."""
    cfg = make_cfg("activation=relu", "model.depth=2", "model.width=128", "trainer.epochs=1", "trainer.device=cpu")
    summary = run(cfg, tmp_path)
    assert summary["final"]["test_acc"] >= 0.90
    assert len(summary["history"]) == 1


def test_tf32_changes_nothing_on_a_cpu_and_says_so(tmp_path, caplog):
    """TensorFloat-32 is a CUDA GPU's: a CPU run with trainer.tf32=true is the same run, number for number,
    and its log says the setting had no effect."""
    quiet = ["trainer.checkpoint=false", "logger.tensorboard=false"]
    plain = run(make_cfg(*TINY, *quiet), tmp_path / "plain")
    try:
        with caplog.at_level("INFO", logger="vgbench.train"):
            tf32 = run(make_cfg(*TINY, *quiet, "trainer.tf32=true"), tmp_path / "tf32")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False  # the next test's process state, as a job would leave it
    assert tf32["final"] == plain["final"] and tf32["profile"] == plain["profile"]
    assert "trainer.tf32 has no effect on cpu" in caplog.text


def test_a_measured_step_is_recorded_at_the_next_measured_step_or_log_event(tmp_path):
    """train.record starts a measured step's one transfer and hands it to the recorders a measured step
    later (on a GPU the host writes it while the device runs on), or at the next log event: every
    measurement arrives, in order, with its own step, epoch and numbers, and none is left on its way."""
    cfgs = [make_cfg(*TINY, f"trainer.seed={seed}", "monitor.histogram_every_n_steps=0") for seed in (0, 1)]
    stack = setup([RunFolder(tmp_path / str(seed)) for seed in (0, 1)], cfgs, Placement(progress=False))
    idx = torch.arange(stack.shape.data.batch_size).expand(2, -1)
    for step, epoch in enumerate((1, 1, 2)):
        train_step(stack, idx, measured_in_epoch=epoch)
        stack.step += 1
        last = [member.recorder.last for member in stack.runs]
        assert [m.step if m else None for m in last] == [step - 1 if step else None] * 2
    assert [(item.sent.step, item.epoch) for item in stack.in_flight] == [(2, 2)]
    deliver(stack)
    assert not stack.in_flight
    for member in stack.runs:
        rows = read_rows_text(member.recorder.series.steps.text)
        assert [(row["step"], row["epoch"]) for row in rows] == [("0", "1"), ("1", "1"), ("2", "2")]
    # the numbers are the step's own: the first step's batch loss is the loss of the initial weights
    first = [float(read_rows_text(member.recorder.series.steps.text)[0][BATCH_LOSS]) for member in stack.runs]
    fresh = setup([RunFolder(tmp_path / f"fresh{seed}") for seed in (0, 1)], cfgs, Placement(progress=False))
    x, y = fresh.data.train.gather(idx)
    with torch.no_grad():
        expected = fresh.loss_fn(fresh.model(x).float(), y).mean(dim=1)
    assert first == pytest.approx(expected.tolist(), rel=1e-6)
