"""The command line's launcher process stays light: the trainer and torch load inside each job."""

import importlib
import subprocess
import sys

import pytest

import vgbench
from tests.conftest import run_app

TORCH_FREE = (
    "vgbench.app",
    "vgbench.jobs",
    "vgbench.errors",
    "vgbench.config",
    "vgbench.callbacks",
    "vgbench.summary",
    "vgbench.placement",
    "vgbench.files",
    "vgbench.report",
    "hydra_plugins.vgbench_launchers.parallel",
    "hydra_plugins.vgbench_launchers.stacked",
    "hydra_plugins.vgbench_launchers.sweeper",
    "hydra_plugins.vgbench_launchers.compose",
)


PROBE = """
import importlib, sys
for module in sys.argv[1:]:
    importlib.import_module(module)
    heavy = [name for name in ("torch", "vgbench.train") if name in sys.modules]
    if heavy:
        sys.exit(f"{module} loads {heavy}")
"""


@pytest.mark.slow
def test_the_launcher_side_imports_no_torch():
    """One interpreter imports each module in turn and names the first that brings torch or the trainer
    in (one process for all: none of them may, so none can hide another)."""
    result = subprocess.run([sys.executable, "-c", PROBE, *TORCH_FREE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    caught = subprocess.run(
        [sys.executable, "-c", PROBE, "vgbench.errors", "vgbench.model"], capture_output=True, text=True
    )
    assert caught.returncode == 1 and caught.stderr.strip() == "vgbench.model loads ['torch']"


def test_cfg_job_prints_the_composed_config_without_running(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vgbench.app", "--cfg", "job", "activation=sigmoid", "model.depth=10"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "name: sigmoid" in result.stdout and "depth: 10" in result.stdout
    assert not (tmp_path / "outputs").exists()  # nothing ran, nothing written


def test_version(tmp_path):
    result = run_app("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"vgbench {vgbench.__version__}"
    assert vgbench.__version__ != "0+unknown"  # the installed package's version


@pytest.mark.slow
def test_a_bad_command_line_is_one_line_and_exit_2_unless_hydra_full_error_is_set(tmp_path):
    result = run_app("model.depht=3", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: model.depht is not a setting (did you mean model.depth?)")
    result = run_app("model.depht=3", f"hydra.run.dir={tmp_path / 'run'}", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr  # Hydra's own report, whole
    assert "Key 'depht' not in 'ModelConfig'" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("vgbench.theory", "usage: vgbench-theory [-h] [--phase-diagram] [overrides ...]"),
        ("vgbench.provision", "usage: vgbench-data [-h] [overrides ...]"),
        ("vgbench.report", "usage: vgbench-report [-h] [--format {latex}] folder"),
        ("vgbench.lessons", "usage: vgbench-lesson [-h] [--out OUT] name"),
    ],
)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_answers_help_with_its_usage_and_exit_0(command, usage, flag, capsys):
    main = importlib.import_module(command).main
    with pytest.raises(SystemExit) as stop:
        main([flag])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(usage)


@pytest.mark.parametrize("command", ["vgbench.theory", "vgbench.provision", "vgbench.report", "vgbench.lessons"])
def test_an_unknown_flag_is_one_line_and_exit_2(command, capsys):
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(command).main(["--bogus", "x"])
    error = capsys.readouterr().err
    assert stop.value.code == 2 and error.count("\n") == 1
    assert error.startswith("error: vgbench-") and "unrecognized arguments: --bogus" in error and "--help)" in error


@pytest.mark.slow
def test_hydras_own_help_stays_for_vgbench_train():
    result = subprocess.run([sys.executable, "-m", "vgbench", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "== Configuration groups ==" in result.stdout
