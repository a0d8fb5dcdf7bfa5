"""vgbench's launchers: how the stacked launcher groups jobs and derives their configs."""

import pytest
from omegaconf import OmegaConf, open_dict, read_write

from hydra_plugins.vgbench_launchers.compose import compose_configs, sibling_config
from hydra_plugins.vgbench_launchers.stacked import record_yaml
from vgbench.config import task_part


@pytest.mark.parametrize(
    ("first", "other"),
    [
        (["trainer.seed=0", "optimizer.lr=0.1"], ["trainer.seed=7", "optimizer.lr=0.3"]),
        (["trainer.seed=0", "optimizer.lr=0.1"], ["trainer.seed=7", "optimizer.lr=1e-3"]),
        (["model.init=auto", "model.init_std=0.01"], ["model.init=orthogonal", "model.init_std=0.5"]),
        (["model.depth=3", "data.batch_size=64"], ["model.depth=7", "data.batch_size=32"]),  # a shape
        (["model.depth=3", "model.width=64"], ["model.depth=7", "model.width=[8,16]"]),  # a list for an int
    ],
)
def test_a_sibling_config_is_what_hydra_composes(hydra_loader, first, other):
    loader, master = hydra_loader
    composed = loader.load_sweep_config(master, first)
    derived = sibling_config(composed, first, other)
    expected = loader.load_sweep_config(master, other)
    assert derived is not None
    assert OmegaConf.to_container(derived) == OmegaConf.to_container(expected)
    assert OmegaConf.to_yaml(derived) == OmegaConf.to_yaml(expected)


@pytest.mark.parametrize(
    ("first", "other"),
    [
        (["activation=relu"], ["activation=tanh"]),  # a config group
        (["trainer.seed=0", "loss=cross_entropy"], ["trainer.seed=0", "loss=mse"]),  # an undotted key may be a group
        (["trainer.seed=0"], ["trainer.seed=0", "optimizer.lr=0.3"]),  # another set of keys
        (["trainer.seed=0"], ["+trainer.seed=1"]),  # not a plain value change
    ],
)
def test_only_values_of_dotted_keys_make_siblings(hydra_loader, first, other):
    loader, master = hydra_loader
    assert sibling_config(loader.load_sweep_config(master, first), first, other) is None


def test_the_stacked_launcher_names_a_bad_setting_and_its_choices():
    from hydra_plugins.vgbench_launchers.stacked import StackedLauncher
    from vgbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"hydra.launcher.max_stack=0 is not valid; it must be >= 1"):
        StackedLauncher(max_stack=0)
    with pytest.raises(ConfigError, match=r"executor='pbs' is not valid; choose one of: local, submitit_local, slurm"):
        StackedLauncher(executor="pbs")
    with pytest.raises(ConfigError, match=r"hydra.launcher.memory_fraction=1.5 is not valid; it must be in \(0, 1\]"):
        StackedLauncher(memory_fraction=1.5)


class CountingLoader:
    """Hydra's config loader, counting the compositions it does."""

    def __init__(self, loader):
        self.loader, self.calls = loader, 0

    def load_sweep_config(self, master, overrides):
        self.calls += 1
        return self.loader.load_sweep_config(master, overrides)


@pytest.mark.slow
def test_a_batch_is_composed_once_per_family_of_siblings(hydra_loader):
    loader, master = hydra_loader
    batch = [
        [f"activation={act}", f"trainer.seed={seed}", f"optimizer.lr={lr}"]
        for act in ("tanh", "relu")
        for seed in (0, 1)
        for lr in (0.1, 0.3)
    ]
    counting = CountingLoader(loader)
    sweep_dir = str(master.hydra.sweep.dir)  # as a sweep resolves it before its jobs: its time is cached
    jobs = compose_configs(counting, master, batch)
    assert counting.calls == 2  # one per activation: the seeds and learning rates are siblings
    for overrides, job in zip(batch, jobs, strict=True):
        expected = loader.load_sweep_config(master, overrides)
        assert OmegaConf.to_yaml(job.config) == OmegaConf.to_yaml(expected)
        assert job.sweep_dir == sweep_dir == str(expected.hydra.sweep.dir)
        # the task part, copied from the sibling's own: Hydra's config less its hydra node, flags and all
        task = task_part(expected)
        assert OmegaConf.to_yaml(job.task) == OmegaConf.to_yaml(task) and "hydra" not in job.task
        assert OmegaConf.is_struct(job.task) == OmegaConf.is_struct(task) and job.task.optimizer.lr == float(
            overrides[2].split("=")[1]
        )


def test_a_runs_record_is_written_as_omegaconf_writes_it(hydra_loader):
    """The stacked launcher's .hydra/ files (C emitter) hold OmegaConf.to_yaml's text, strings that read as
    other types quoted, interpolations kept, for the whole config and its parts."""
    loader, master = hydra_loader
    config = loader.load_sweep_config(master, ["trainer.seed=3", "optimizer.lr=1e-3"])
    with read_write(config), open_dict(config):
        config.note = {"looks_like": ["1", "1e-3", "true", "null", "~", "a: b", "é"], "ref": "${trainer.seed}"}
    container = OmegaConf.to_container(config, enum_to_str=True)
    assert record_yaml(container) == OmegaConf.to_yaml(config)
    assert record_yaml(container["hydra"]["overrides"]["task"]) == OmegaConf.to_yaml(config.hydra.overrides.task)
    assert "'1e-3'" in record_yaml(container) and "${trainer.seed}" in record_yaml(container)


def test_a_bad_value_in_a_batch_fails_as_hydra_reports_it(hydra_loader):
    from hydra.errors import ConfigCompositionException

    loader, master = hydra_loader
    counting = CountingLoader(loader)
    with pytest.raises(ConfigCompositionException, match="Error merging override trainer.seed=abc"):
        compose_configs(counting, master, [["trainer.seed=0"], ["trainer.seed=abc"]])
    assert counting.calls == 2  # the failing sibling was composed by Hydra, for Hydra's message


def test_vgbench_sweeps_with_its_own_sweeper(hydra_loader):
    _, master = hydra_loader
    assert master.hydra.sweeper._target_ == "hydra_plugins.vgbench_launchers.sweeper.VgbenchSweeper"


def test_the_sweeper_hands_its_configs_to_the_stacked_launcher(hydra_loader):
    from hydra.types import HydraContext

    from hydra_plugins.vgbench_launchers.stacked import StackedLauncher
    from hydra_plugins.vgbench_launchers.sweeper import VgbenchSweeper

    loader, master = hydra_loader
    counting = CountingLoader(loader)
    sweeper = VgbenchSweeper(max_batch_size=None)
    sweeper.hydra_context, sweeper.config = HydraContext(config_loader=counting, callbacks=None), master
    sweeper.launcher = StackedLauncher()
    batch = [["trainer.seed=0", "optimizer.lr=0.1"], ["trainer.seed=1", "optimizer.lr=0.1"]]
    sweeper.validate_batch_is_legal(batch)
    assert counting.calls == 1
    assert list(sweeper.launcher.composed) == [tuple(overrides) for overrides in batch]
    assert sweeper.launcher.composed[tuple(batch[1])].config.trainer.seed == 1
    assert sweeper.launcher.composed[tuple(batch[1])].task.trainer.seed == 1


@pytest.mark.slow
def test_a_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    """hydra.sweeper.dry_run=true: the stacks with their runs, shapes and memory, the runs that would fail
    alone, where they would run; no sweep folder, nothing trained."""
    from tests.conftest import run_app

    sweep = tmp_path / "sweep"
    result = run_app(
        "-m",
        "data=synthetic",
        "model.depth=2,0,3",
        "trainer.seed=0,1",
        "model.width=16",
        "trainer.device=cpu",
        "hydra/launcher=stacked",
        "hydra.sweeper.dry_run=true",
        "hydra.callbacks.vgbench.report=true",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dry run: 4 run(s) in 2 stack(s) of up to 64, on this machine's cpu, ")
    assert lines[1:4] == [
        "2 run(s) would fail, each alone, beside them:",
        "  data=synthetic,model.depth=0,trainer.seed=0,model.width=16,trainer.device=cpu: "
        "model.depth=0 is not valid; it must be >= 1",
        "  data=synthetic,model.depth=0,trainer.seed=1,model.width=16,trainer.device=cpu: "
        "model.depth=0 is not valid; it must be >= 1",
    ]
    assert lines[4].startswith("stack 1: 2 run(s) of a 2x16 relu MLP at batch 64, about ")
    assert lines[5:7] == [
        f"  data=synthetic,model.depth=2,trainer.seed={s},model.width=16,trainer.device=cpu" for s in (0, 1)
    ]
    assert lines[7].startswith("stack 2: 2 run(s) of a 3x16 relu MLP at batch 64")
    assert len(lines) == 10 and not sweep.exists()


def test_the_plan_states_each_stacks_memory(hydra_loader):
    """The planned bytes per run are vgbench.memory's for the run's own config, times the stack's runs."""
    from hydra.types import HydraContext

    from hydra_plugins.vgbench_launchers.stacked import StackedLauncher
    from vgbench.memory import run_bytes, size_text

    loader, master = hydra_loader
    launcher = StackedLauncher(executor="slurm", submitit={"partition": "gpu"})
    launcher.setup(hydra_context=HydraContext(config_loader=loader, callbacks=None), task_function=None, config=master)
    lines = launcher.plan([["data=synthetic", f"trainer.seed={s}", "model.depth=4"] for s in range(3)])
    task = compose_configs(loader, master, [["data=synthetic", "trainer.seed=0", "model.depth=4"]])[0].task
    each = run_bytes(task, 784, 10)  # synthetic
    assert lines[0] == "dry run: 3 run(s) in 1 stack(s) of up to 64, one slurm task per stack (partition=gpu)"
    assert lines[1] == (
        f"stack 1: 3 run(s) of a 4x256 relu MLP at batch 64, about {size_text(each)} per run, "
        f"{size_text(3 * each)} in all"
    )


class Node:  # a node with a link back to itself, as a config's nodes link to their parent
    def __init__(self):
        self.parent = self


def test_the_collector_is_paused_while_configs_are_built_and_what_they_left_is_frozen():
    """Paused inside; afterwards as it was. Garbage made inside is collected, not frozen; what lives is
    frozen (later collections skip it)."""
    import gc
    import weakref

    from hydra_plugins.vgbench_launchers.compose import collector_paused

    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            gc.unfreeze()
            with collector_paused():
                assert not gc.isenabled()
                garbage = Node()
                dropped = weakref.ref(garbage)
                del garbage  # a cycle: only the collector can free it
                kept = Node()
                assert dropped() is not None
            assert gc.isenabled() == enabled
            assert dropped() is None and kept.parent is kept
            assert gc.get_freeze_count() > 0
    finally:
        gc.enable()
        gc.unfreeze()
