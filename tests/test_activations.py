import math

import pytest
import torch

from tests.conftest import make_cfg
from vgbench.activations import ACTIVATIONS, build_activation
from vgbench.config import CONF_DIR
from vgbench.errors import ConfigError

NAMES = sorted(ACTIVATIONS)


def activation(name):
    return build_activation(name, dict(make_cfg(f"activation={name}").activation.params))


def points():
    # float64 points away from the kinks of relu/step/hardtanh (at 0 and +-1), where f' is undefined
    z = torch.linspace(-4, 4, 801, dtype=torch.float64)
    return z[(z.abs() > 1e-3) & ((z.abs() - 1).abs() > 1e-3)].reshape(-1, 3)


def test_every_activation_has_a_config_file_and_back():
    files = {path.stem for path in (CONF_DIR / "activation").glob("*.yaml")}
    assert files == {*ACTIVATIONS, "custom"}  # custom: the user's own function (tests/test_custom_activation.py)
    assert {"binary_step", "linear", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"} <= files  # the course's
    assert {"elu", "selu", "gelu", "silu", "softplus", "mish", "hardtanh"} <= files


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_autograd(name):
    f = activation(name)
    z = points().requires_grad_()
    a = f(z)
    grad_output = torch.randn_like(a)
    (autograd,) = torch.autograd.grad(a, z, grad_output)
    manual = f.vjp(z.detach(), grad_output)
    torch.testing.assert_close(manual, autograd, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_finite_differences(name):
    f = activation(name)
    z = points()
    h = 1e-6
    if name == "softmax":  # a vector function: compare the vjp with a directional difference
        v = torch.randn_like(z)
        numeric = ((f(z + h * v) - f(z - h * v)) / (2 * h) * torch.ones_like(z)).sum(dim=1)
        manual = (f.vjp(z, torch.ones_like(z)) * v).sum(dim=1)
    else:
        numeric = (f(z + h) - f(z - h)) / (2 * h)
        manual = f.derivative(z)
    torch.testing.assert_close(manual, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sigmoid", 0.25),
        ("tanh", 1.0),
        ("relu", 1.0),
        ("linear", 1.0),
        ("binary_step", 0.0),
        ("softmax", 0.25),
        ("selu", 1.0507009873554805 * 1.6732632423543772),
        ("gelu", 1.1289),
        ("silu", 1.0998),
    ],
)
def test_max_derivative(name, expected):
    assert activation(name).max_derivative == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fraction", [0.01, 0.3])
def test_saturated_is_where_the_derivative_is_below_the_threshold(name, fraction):
    """The monitor's saturated units, against f' in float64 on a dense float32 grid (spacing 1e-4), infinities
    and NaN: sigmoid, tanh and relu test a bound on |z| instead, which may differ only at the grid point next
    to each boundary."""
    f = activation(name)
    threshold = fraction * f.max_derivative if f.max_derivative > 0 else math.inf
    z = torch.cat([torch.linspace(-30, 30, 600_001), torch.tensor([math.inf, -math.inf, math.nan])])
    reference = f.derivative(z.double()).abs() < threshold
    if name == "softmax":  # f' of softmax is taken along its last dimension: one value at a time
        reference = f.derivative(z.double().unsqueeze(-1)).abs().squeeze(-1) < threshold
        z = z.unsqueeze(-1)
    measured = f.saturated(z, threshold).reshape(reference.shape)
    assert int((measured != reference).sum()) <= 2
    if name in {"sigmoid", "tanh", "relu"}:  # their own bounds, on both sides of them
        assert 0 < int(measured.sum()) < len(z)


def test_binary_step_passes_exactly_zero_gradient():
    f = activation("binary_step")
    w = torch.randn(5, 5, requires_grad=True)
    x = torch.randn(8, 5)
    f(f(x @ w) @ torch.randn(5, 5)).sum().backward()
    assert w.grad is not None and torch.count_nonzero(w.grad) == 0


def test_params_come_from_the_yaml_files():
    assert activation("leaky_relu").negative_slope == 0.01
    assert activation("elu").alpha == 1.0
    assert (activation("hardtanh").min_val, activation("hardtanh").max_val) == (-1.0, 1.0)
    cfg = make_cfg("activation=leaky_relu", "activation.params.negative_slope=0.2")
    f = build_activation(cfg.activation.name, dict(cfg.activation.params))
    assert f(torch.tensor([-1.0])).item() == pytest.approx(-0.2)


def test_bad_params_name_the_valid_ones():
    with pytest.raises(ConfigError, match="it takes: negative_slope"):
        build_activation("leaky_relu", {"slope": 0.1})
    with pytest.raises(ConfigError, match="no parameters"):
        build_activation("relu", {"alpha": 1.0})
    with pytest.raises(ConfigError, match="'swishy' is not valid; choose one of: binary_step"):
        build_activation("swishy")


def test_sigmoid_bound_shrinks_geometrically():
    assert activation("sigmoid").max_derivative ** 10 == pytest.approx(0.25**10)
    assert math.isclose(activation("relu").max_derivative ** 10, 1.0)
