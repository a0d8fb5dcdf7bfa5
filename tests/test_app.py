"""The command line's launcher process stays light: the trainer and torch load inside each job."""

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException, OverrideParseException

import vgbench
from tests.conftest import make_cfg, run_app
from vgbench.app import command_line_error

TORCH_FREE = ("vgbench.app", "vgbench.config", "vgbench.callbacks", "vgbench.summary", "vgbench.placement",
              "vgbench.files", "vgbench.report", "hydra_plugins.vgbench_launchers.parallel",
              "hydra_plugins.vgbench_launchers.stacked", "hydra_plugins.vgbench_launchers.sweeper",
              "hydra_plugins.vgbench_launchers.compose")  # fmt: skip


@pytest.mark.parametrize("module", TORCH_FREE)
def test_the_launcher_side_imports_no_torch(module):
    probe = f"import sys, {module}; print(sorted(m for m in ('torch', 'vgbench.train') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_cfg_job_prints_the_composed_config_without_running(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vgbench.app", "--cfg", "job", "activation=sigmoid",
                             "model.depth=10"], cwd=tmp_path, capture_output=True, text=True, check=True)  # fmt: skip
    assert "name: sigmoid" in result.stdout and "depth: 10" in result.stdout
    assert not (tmp_path / "outputs").exists()  # nothing ran, nothing written


def test_version(tmp_path):
    result = run_app("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"vgbench {vgbench.__version__}"
    assert vgbench.__version__ != "0+unknown"  # the installed package's version


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("activation=swishy", "activation='swishy' is not valid; choose one of: binary_step, custom, elu, gelu, "
                              "hardtanh, leaky_relu, linear, mish, relu, selu, sigmoid, silu, softmax, softplus, tanh"),
        ("+experiment=nope", "experiment='nope' is not valid; choose one of: criticality, init_study, isometry, "
                             "lr_study, mnist_default, vanishing"),
        ("model.depht=3", "model.depht is not a setting (did you mean model.depth?); choose one of: model.depth, "
                          "model.width, model.init, model.init_std, model.sigma_w2, model.bias_init, model.bias_std, "
                          "model.norm, model.residual, model.dropout"),
        ("depth=3", "depth is not a setting; choose one of: activation, model, optimizer, data, trainer, monitor, "
                    "logger, loss"),
        ("model.depth=three", "model.depth='three' is not valid; Value 'three' of type 'str' could not be converted "
                              "to Integer"),
        ("data.batch_size=1.5", "data.batch_size=1.5 is not valid; Value '1.5' of type 'float' could not be "
                                "converted to Integer"),
        ("model.depth=[", "cannot parse the override 'model.depth=[': no viable alternative at input '['"),
        ("+model.depth=3", "Could not append to config. An item is already at 'model.depth'. Either remove + "
                           "prefix: 'model.depth=3' Or add a second + to add or override 'model.depth': "
                           "'++model.depth=3'"),
    ],
)  # fmt: skip
def test_a_command_line_hydra_cannot_compose_is_one_line(override, expected):
    with pytest.raises((ConfigCompositionException, OverrideParseException)) as error:
        make_cfg(override)
    assert command_line_error(error.value) == expected


def test_a_bad_command_line_is_one_line_and_exit_2_unless_hydra_full_error_is_set(tmp_path):
    result = run_app("model.depht=3", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: model.depht is not a setting (did you mean model.depth?)")
    result = run_app("model.depht=3", f"hydra.run.dir={tmp_path / 'run'}", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr  # Hydra's own report, whole
    assert "Key 'depht' not in 'ModelConfig'" in result.stderr
    assert not (tmp_path / "run").exists()
