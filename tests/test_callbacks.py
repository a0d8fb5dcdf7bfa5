"""The sweep callback: how many jobs a multirun makes (for the console's [k/N]) and the line per run."""

from omegaconf import open_dict, read_write

from vgbench.callbacks import job_line, sweep_shape
from vgbench.jobs import JobResult


def with_sweep(master, sweeper_target, task, params=None):
    with read_write(master), open_dict(master):
        master.hydra.sweeper._target_ = sweeper_target
        master.hydra.sweeper.params = params
        master.hydra.overrides.task = task
    return master


def test_the_basic_sweepers_count_the_product_of_the_sweep_lists(hydra_loader):
    _, master = hydra_loader
    task = ["activation=tanh,relu", "trainer.seed=0,1,2", "model.width=16"]
    for target in (
        "hydra_plugins.vgbench_launchers.sweeper.VgbenchSweeper",  # vgbench's default
        "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    ):
        assert sweep_shape(with_sweep(master, target, task)) == (6, ["activation", "trainer.seed"])
    preset = with_sweep(
        master,
        "hydra_plugins.vgbench_launchers.sweeper.VgbenchSweeper",
        ["trainer.seed=0"],
        {"model.depth": "20,10,5,2", "trainer.seed": "0,1,2"},
    )
    assert sweep_shape(preset) == (4, ["model.depth"])  # the command line's seed replaces the preset's list


def test_another_sweeper_gets_no_count(hydra_loader):
    _, master = hydra_loader
    optuna = with_sweep(
        master, "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", ["activation=tanh,relu"]
    )
    assert sweep_shape(optuna) == (None, [])


def test_a_job_line_counts_and_names_the_run():
    result = JobResult("run", "completed", test_acc=0.96123, grad_ratio_step0=0.82, wall_time_s=41.31, stack_size=3)
    assert job_line(result, "activation=relu,model.depth=10", 3, 16) == (
        "[ 3/16] activation=relu,model.depth=10  completed  acc 0.9612  first/last 8.2e-01  41.3 s  (stack of 3)"
    )
    assert job_line(result, "x=1", 3, None).startswith("[3] x=1  completed")
