"""Bring your own activation: activation=custom activation.target=module.function."""

import math

import pytest
import torch

from tests.conftest import TINY, make_cfg, run_app
from tests.custom_activations import scaled_softsign
from vgbench.activations import CustomActivation, activation_from_config
from vgbench.errors import ConfigError
from vgbench.train import run
from vgbench.validate import validate

TARGET = ["activation=custom", "activation.target=tests.custom_activations.scaled_softsign"]


def test_its_derivative_comes_from_autograd_and_matches_finite_differences():
    f = activation_from_config(make_cfg(*TARGET).activation)
    z = torch.linspace(-4, 4, 161, dtype=torch.float64)
    step = 1e-6
    finite = (scaled_softsign(z + step) - scaled_softsign(z - step)) / (2 * step)
    torch.testing.assert_close(f.derivative(z), finite, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(f.derivative(z), 2 / (1 + z.abs()) ** 2)  # by hand
    assert f.max_derivative == pytest.approx(2.0)  # at z = 0: the saturation threshold is 1% of it
    assert f.kaiming_nonlinearity is None  # init=auto falls back to Xavier


def test_it_trains_and_the_monitor_measures_it(tmp_path):
    summary = run(make_cfg(*TINY, *TARGET, "model.depth=3", "trainer.epochs=2", "monitor.every_n_steps=2"), tmp_path)
    assert summary["status"] == "completed" and summary["final"]["test_acc"] > 0.9
    layers = summary["profile"]["step0"]["layers"]
    assert all(0 <= s <= 1 for s in layers["activation/saturated"]) and layers["activation/dead"] == [0.0] * 3
    assert all(math.isfinite(v) and v > 0 for v in layers["delta_norm"])
    assert summary["config"]["activation"] == {"name": "custom", "params": {}, "target": TARGET[1].split("=")[1]}
    assert summary["theory"]["applies"]  # the mean field takes its f and f' too


def test_the_lessons_property_table_takes_it():
    from vgbench.lessons.activations import default_activation, properties

    found = properties(activation_from_config(make_cfg(*TARGET).activation), default_activation("relu"))
    # bounded by 2 on both sides, but its tails flatten only like 2 / z^2 (f'(30) = 0.002): not "saturating"
    assert (found.lower, found.upper, found.saturating, found.zero_centred) == ("-2", "2", "no", True)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.custom_activations.cumulative", "is not elementwise: changing one input changed other outputs"),
        ("tests.custom_activations.row_sum", "is not elementwise: it maps shape (3, 5) to (3,)"),
        ("tests.custom_activations.missing", "does not import"),
        ("no_such_module.f", "does not import (No module named 'no_such_module')"),
        ("tests.custom_activations.NOT_A_FUNCTION", "is not a function"),
        ("softsign", "is not valid; give module.function"),
    ],
)
def test_a_bad_target_is_one_clear_error(target, message):
    with pytest.raises(ConfigError, match=None) as error:
        validate(make_cfg("activation=custom", f"activation.target={target}"))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_custom_without_a_target_names_what_to_give():
    with pytest.raises(ConfigError, match="activation=custom needs activation.target=module.function"):
        validate(make_cfg("activation=custom"))


@pytest.mark.slow
def test_the_command_line_finds_a_module_in_the_folder_it_runs_from(tmp_path):
    (tmp_path / "my_activations.py").write_text("import torch\n\ndef bent(z):\n    return z + 0.5 * torch.tanh(z)\n")
    result = run_app(
        *TINY,
        "activation=custom",
        "activation.target=my_activations.bent",
        "trainer.epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        module="vgbench.app",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    bad = run_app(*TINY, "activation=custom", "activation.target=my_activations.nope", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: activation.target='my_activations.nope' does not")


def test_it_is_not_in_the_registry_of_built_ins():
    from vgbench.activations import ACTIVATIONS

    assert "custom" not in ACTIVATIONS and isinstance(
        activation_from_config(make_cfg(*TARGET).activation), CustomActivation
    )
