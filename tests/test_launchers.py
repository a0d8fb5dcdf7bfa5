"""vgbench's launchers: how the stacked launcher groups jobs and derives their configs."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict, read_write

from hydra_plugins.vgbench_launchers.stacked import sibling_config
from vgbench.config import CONF_DIR, group_into_stacks, register_configs, stack_key

BASE = ["data=synthetic", "activation=tanh", "model.depth=3"]


@pytest.fixture
def hydra_loader():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        master = compose("config", overrides=BASE, return_hydra_config=True)
        with read_write(master), open_dict(master):
            master.hydra.mode = RunMode.MULTIRUN
            master.hydra.job.name = "train"
        yield GlobalHydra.instance().hydra.config_loader, master
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("other", [
    ["trainer.seed=7", "optimizer.lr=0.3"],
    ["trainer.seed=7", "optimizer.lr=1e-3"],
    ["trainer.seed=0", "optimizer.lr=0.3", "model.init=orthogonal", "model.init_std=0.5"],
])  # fmt: skip
def test_a_sibling_config_is_what_hydra_composes(hydra_loader, other):
    loader, master = hydra_loader
    first = ["trainer.seed=0", "optimizer.lr=0.1", *(["model.init=auto", "model.init_std=0.01"] if len(other) > 2
                                                     else [])]  # fmt: skip
    composed = loader.load_sweep_config(master, first)
    derived = sibling_config(composed, first, other)
    expected = loader.load_sweep_config(master, other)
    assert derived is not None
    assert OmegaConf.to_container(derived) == OmegaConf.to_container(expected)
    assert OmegaConf.to_yaml(derived) == OmegaConf.to_yaml(expected)


@pytest.mark.parametrize(("first", "other"), [
    (["model.depth=2"], ["model.depth=3"]),  # a shape
    (["activation=relu"], ["activation=tanh"]),  # a config group
    (["trainer.seed=0"], ["trainer.seed=0", "optimizer.lr=0.3"]),  # another set of keys
    (["trainer.seed=0"], ["+trainer.seed=1"]),  # not a plain value change
])  # fmt: skip
def test_only_per_run_values_make_siblings(hydra_loader, first, other):
    loader, master = hydra_loader
    assert sibling_config(loader.load_sweep_config(master, first), first, other) is None


def test_jobs_group_by_stack_key_in_order_and_split_at_max_stack():
    keys = ["a", "b", "a", "a", "c", "b", "a"]
    assert group_into_stacks(keys, 64) == [[0, 2, 3, 6], [1, 5], [4]]
    assert group_into_stacks(keys, 2) == [[0, 2], [3, 6], [1, 5], [4]]


def test_stack_keys_ignore_per_run_keys_and_placement():
    from tests.conftest import make_cfg

    base = stack_key(make_cfg(*BASE))
    assert stack_key(make_cfg(*BASE, "trainer.seed=3", "optimizer.lr=0.5", "model.init=orthogonal",
                              "trainer.device=cpu", "logger.tensorboard=false")) == base  # fmt: skip
    for other in ("model.width=64", "optimizer=adam", "trainer.amp=bf16", "data.batch_size=32", "trainer.epochs=2"):
        assert stack_key(make_cfg(*BASE, other)) != base, other


def test_the_stacked_launcher_names_a_bad_setting_and_its_choices():
    from hydra_plugins.vgbench_launchers.stacked import StackedLauncher
    from vgbench.config import ConfigError

    with pytest.raises(ConfigError, match=r"hydra.launcher.max_stack=0 is not valid; it must be >= 1"):
        StackedLauncher(max_stack=0)
    with pytest.raises(ConfigError, match=r"executor='pbs' is not valid; choose one of: local, submitit_local, slurm"):
        StackedLauncher(executor="pbs")
