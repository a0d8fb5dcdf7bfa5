"""A run folder's state and each run's checkpoint (vgbench.checkpoint): identity, refusal, damage."""

import json
import os

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import TINY, make_cfg
from vgbench.checkpoint import CheckpointError, inspect_run_folder
from vgbench.config import run_identity
from vgbench.errors import ConfigError, UserError
from vgbench.train import run


def test_checkpoints_hold_no_device_random_state(tmp_path):
    """The batch order and dropout masks come from (seed, epoch), so a checkpoint needs no generator
    state: it resumes the same on any device, with any number of visible GPUs."""
    run(make_cfg(*TINY, "model.dropout=0.2"), tmp_path)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert not {"cpu_rng", "cuda_rng"} & set(checkpoint)
    assert checkpoint["model"]["hidden.0.linear.weight"].shape == (1, 784, 32)  # one run, as a stack of one


def test_a_checkpoint_whose_monitor_series_are_not_json_text_is_one_error(tmp_path):
    """The recorder's state is JSON text; anything else (a hand-edited or foreign file) is refused whole."""
    run(make_cfg(*TINY, "trainer.epochs=1"), tmp_path)
    path = tmp_path / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    torch.save(checkpoint | {"recorder": {"series": {}}}, path)
    with pytest.raises(CheckpointError, match="holds no readable monitor series"):
        run(make_cfg(*TINY, "trainer.epochs=2", "trainer.resume=true"), tmp_path)


def test_checkpoint_is_never_overwritten_by_a_fresh_run(tmp_path):
    first = run(make_cfg(*TINY), tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert run(make_cfg(*TINY), tmp_path) == first  # completed already: skipped (trainer.skip_completed)
    with pytest.raises(ConfigError, match="checkpoint.pt exists; set trainer.resume=true"):
        run(make_cfg(*TINY, "trainer.skip_completed=false"), tmp_path)
    with pytest.raises(
        UserError,
        match=r"holds a completed run that was written by a different config \(differs "
        r"in: model.depth\)",
    ):
        run(make_cfg(*TINY, "model.depth=2", "trainer.resume=true"), tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    "changed", ["trainer.amp=bf16", "monitor.every_n_steps=3", "trainer.deterministic=true", "trainer.eval_every=2"]
)
def test_a_changed_setting_is_another_run(tmp_path, changed):
    """skip_completed and resume compare the run's identity: amp, monitor, determinism and evaluation
    settings change what a run computes, so a completed run with other ones is not this run."""
    run(make_cfg(*TINY), tmp_path)
    before = (tmp_path / "summary.json").read_text()
    with pytest.raises(UserError, match=f"differs in: {changed.split('=')[0]}"):
        run(make_cfg(*TINY, changed, "trainer.resume=true"), tmp_path)
    assert (tmp_path / "summary.json").read_text() == before


def test_placement_is_not_identity(tmp_path):
    first = run(make_cfg(*TINY), tmp_path)
    again = run(make_cfg(*TINY, "trainer.cpu_threads=2", "logger.tensorboard=false", "trainer.resume=true"), tmp_path)
    assert again == first  # the same run, skipped


def test_a_folder_carries_its_config_converted_once_for_the_identity_and_the_summary(tmp_path):
    """inspect_run_folder converts the config once: the identity, the stack key and summary.json's config
    all come from that one conversion, which must be the config itself, resolved."""
    cfg = make_cfg(*TINY, "optimizer.lr=0.25")
    folder = inspect_run_folder(cfg, tmp_path)
    assert folder.config == OmegaConf.to_container(cfg, resolve=True)
    assert folder.identity == run_identity(cfg) and folder.config["optimizer"]["lr"] == 0.25
    run(cfg, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["config"] == folder.config


def test_a_truncated_checkpoint_is_a_checkpoint_error(tmp_path):
    run(make_cfg(*TINY), tmp_path)
    data = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        run(make_cfg(*TINY, "trainer.epochs=2", "trainer.resume=true"), tmp_path)


def test_a_run_folder_that_is_a_file(tmp_path):
    (tmp_path / "run").write_text("")
    with pytest.raises(UserError, match="the run folder .*run is a file"):
        run(make_cfg(*TINY), tmp_path / "run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_run_folder_that_is_not_writable(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run").chmod(0o500)
    with pytest.raises(UserError, match="cannot write into the run folder"):
        run(make_cfg(*TINY), tmp_path / "run")


def test_a_run_folder_that_is_not_writable_as_root_too(tmp_path, monkeypatch):
    """The check itself, with the write refused (root ignores file modes)."""
    import vgbench.checkpoint as checkpoint

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint, "_probe_writable", refuse)
    with pytest.raises(UserError, match=r"cannot write into the run folder .*run \(Permission denied\)"):
        run(make_cfg(*TINY), tmp_path / "run")
