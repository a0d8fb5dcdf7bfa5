import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY, make_cfg, run_app
from vgbench.config import ConfigError
from vgbench.provision import ProvisionError
from vgbench.train import LOSS_FUNCTIONS, build_optimizer, quadratic_cost, run


def test_end_to_end_app_writes_summary(tmp_path):
    result = run_app(*TINY, "trainer.epochs=2", "data.val_size=128", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "test accuracy:" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_done"] == 2 and summary["steps"] == 2 * math.ceil(384 / 64)
    assert summary["final"]["test_acc"] > 0.5  # chance is 0.1
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"} <= set(summary["final"])
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert summary["device"] == "cpu" and summary["data_source"] == "synthetic"
    assert summary["torch_version"] == torch.__version__ and summary["steps_per_s"] > 0
    assert summary["config"]["model"]["width"] == 32  # the resolved config
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / ".hydra" / "config.yaml").exists()


def test_app_and_console_script_run_from_another_folder(tmp_path):
    result = run_app(*TINY, "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'module'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    script = Path(sys.executable).parent / "vgbench-train"
    result = subprocess.run([script, *TINY, "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'script'}"],
                            cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "module" / "summary.json").exists() and (tmp_path / "script" / "summary.json").exists()


def test_same_seed_same_numbers(tmp_path):
    cfg = make_cfg(*TINY, "trainer.epochs=2", "model.dropout=0.1")
    first, second = run(cfg, tmp_path / "a"), run(cfg, tmp_path / "b")
    assert first["history"] == second["history"] and first["final"] == second["final"]
    third = run(make_cfg(*TINY, "trainer.epochs=2", "model.dropout=0.1", "trainer.seed=1"), tmp_path / "c")
    assert third["history"] != first["history"]


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    common = [*TINY, "model.dropout=0.2", "optimizer=adam", "data.val_size=64"]  # RNG and optimizer state
    uninterrupted = run(make_cfg(*common, "trainer.epochs=3"), tmp_path / "straight")
    run(make_cfg(*common, "trainer.epochs=1"), tmp_path / "resumed")  # "interrupted" after epoch 1
    resumed = run(make_cfg(*common, "trainer.epochs=3", "trainer.resume=true"), tmp_path / "resumed")
    assert resumed["history"] == uninterrupted["history"]
    assert resumed["final"] == uninterrupted["final"]
    assert resumed["steps"] == uninterrupted["steps"]


def test_checkpoint_is_never_overwritten_by_a_fresh_run(tmp_path):
    first = run(make_cfg(*TINY), tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert run(make_cfg(*TINY), tmp_path) == first  # completed already: skipped (trainer.skip_completed)
    with pytest.raises(ConfigError, match="checkpoint.pt exists; set trainer.resume=true"):
        run(make_cfg(*TINY, "trainer.skip_completed=false"), tmp_path)
    with pytest.raises(ConfigError, match="was written by a different config"):
        run(make_cfg(*TINY, "model.depth=2", "trainer.resume=true"), tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_huge_lr_diverges_cleanly(tmp_path):
    result = run_app(*TINY, "optimizer.lr=1e12", "trainer.log_every_n_steps=1", f"hydra.run.dir={tmp_path / 'a'}")
    assert result.returncode == 0, result.stderr  # a sweep goes on
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["epochs_done"] == 0 and summary["final"]["test_loss"] is None  # NaN is stored as null
    assert summary["final"]["test_acc"] is None
    strict = run_app(*TINY, "optimizer.lr=1e12", "trainer.fail_on_divergence=true", f"hydra.run.dir={tmp_path / 'b'}")
    assert strict.returncode == 1


def test_corrupted_data_file_is_refused(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):  # fmt: skip
        (raw / name).write_bytes(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ProvisionError, match="has MD5 .* expected 6bbc9ace"):
        run(make_cfg("data=mnist", f"data.root={tmp_path}", "trainer.device=cpu"), tmp_path / "run")
    assert (raw / "train-images-idx3-ubyte").read_bytes()[:4] == b"\x00\x00\x08\x01"  # left as it was


def test_quadratic_cost_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [1/4, 3/4]
    target = torch.tensor([1])
    expected = 0.5 * ((0.25 - 0) ** 2 + (0.75 - 1) ** 2)
    assert quadratic_cost(logits, target).item() == pytest.approx(expected)
    assert quadratic_cost(logits.repeat(3, 1), target.repeat(3), reduction="sum").item() == pytest.approx(3 * expected)
    assert LOSS_FUNCTIONS["cross_entropy"] is F.cross_entropy


@pytest.mark.parametrize(("optimizer", "loss"), [("sgd", "cross_entropy"), ("momentum", "cross_entropy"),
                                               ("adam", "cross_entropy"), ("rmsprop", "mse")])  # fmt: skip
def test_every_optimizer_and_loss_learns(tmp_path, optimizer, loss):
    summary = run(make_cfg(*TINY, f"optimizer={optimizer}", f"loss={loss}", "trainer.epochs=3"), tmp_path)
    assert summary["status"] == "completed"
    assert summary["final"]["test_acc"] > 0.5  # chance is 0.1


def test_optimizer_presets_build_what_they_say():
    param = [torch.nn.Parameter(torch.zeros(1))]
    momentum = build_optimizer(make_cfg("optimizer=momentum", "optimizer.nesterov=true").optimizer, param)
    assert isinstance(momentum, torch.optim.SGD)
    assert momentum.defaults["momentum"] == 0.9 and momentum.defaults["nesterov"] is True
    assert isinstance(build_optimizer(make_cfg("optimizer=adam").optimizer, param), torch.optim.Adam)
    assert isinstance(build_optimizer(make_cfg("optimizer=rmsprop").optimizer, param), torch.optim.RMSprop)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_cuda_run_with_amp(tmp_path, amp):
    summary = run(make_cfg(*TINY, "trainer.device=cuda", f"trainer.amp={amp}", "trainer.epochs=2"), tmp_path)
    assert summary["device"].startswith("cuda") and summary["status"] == "completed"
    assert summary["final"]["test_acc"] > 0.5


@pytest.mark.mnist
def test_real_mnist_one_epoch_relu(tmp_path):
    """The real data set through the provisioning routes: a small ReLU MLP learns it in one epoch."""
    cfg = make_cfg("activation=relu", "model.depth=2", "model.width=128", "trainer.epochs=1", "trainer.device=cpu")
    summary = run(cfg, tmp_path)
    assert summary["final"]["test_acc"] >= 0.90
    assert len(summary["history"]) == 1
