import math

import pytest
import torch

from tests.conftest import make_cfg
from vgbench.config import ConfigError
from vgbench.model import build_model

FAN_IN, FAN_OUT = 600, 500  # 300k weights: sample variances land within about 0.3% of the truth


def first_weight(*overrides, activation="relu"):
    torch.manual_seed(0)
    cfg = make_cfg(f"activation={activation}", "model.depth=1", f"model.width={FAN_OUT}", *overrides)
    return build_model(cfg.model, cfg.activation, FAN_IN, 10).hidden[0].linear


@pytest.mark.parametrize(
    ("init", "activation", "variance"),
    [
        ("xavier_uniform", "sigmoid", 2 / (FAN_IN + FAN_OUT)),
        ("xavier_normal", "sigmoid", 2 / (FAN_IN + FAN_OUT)),
        ("kaiming_uniform", "relu", 2 / FAN_IN),
        ("kaiming_normal", "relu", 2 / FAN_IN),
        ("kaiming_normal", "leaky_relu", 2 / (1 + 0.01**2) / FAN_IN),
        ("pytorch_default", "relu", 1 / (3 * FAN_IN)),
        ("uniform_standard", "relu", 1 / (3 * FAN_IN)),
        ("auto", "relu", 2 / FAN_IN),  # Kaiming for ReLU-like units
        ("auto", "gelu", 2 / FAN_IN),
        ("auto", "sigmoid", 2 / (FAN_IN + FAN_OUT)),  # Xavier for the rest
        ("auto", "tanh", 2 / (FAN_IN + FAN_OUT)),
        ("auto", "selu", 1 / FAN_IN),  # LeCun for SELU
        ("orthogonal", "relu", 1 / FAN_IN),  # rows orthonormal: each row has squared norm 1
    ],
)
def test_init_variance(init, activation, variance):
    weight = first_weight(f"model.init={init}", activation=activation).weight
    assert weight.mean().item() == pytest.approx(0, abs=3 * math.sqrt(variance / weight.numel()) + 1e-12)
    assert weight.var().item() == pytest.approx(variance, rel=0.02)


def test_uniform_inits_stay_in_their_bounds():
    bound = 1 / math.sqrt(FAN_IN)
    for init in ("uniform_standard", "pytorch_default"):
        weight = first_weight(f"model.init={init}").weight
        assert weight.abs().max().item() <= bound
        assert weight.abs().max().item() > 0.99 * bound


def test_normal_init_uses_its_std():
    weight = first_weight("model.init=normal", "model.init_std=0.05").weight
    assert weight.std().item() == pytest.approx(0.05, rel=0.01)


def test_orthogonal_rows_are_orthonormal():
    weight = first_weight("model.init=orthogonal").weight.double()
    torch.testing.assert_close(weight @ weight.T, torch.eye(FAN_OUT, dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("bias_init", "check"), [
    ("zeros", lambda b: b.abs().max().item() == 0),
    ("pytorch_default", lambda b: 0.9 / math.sqrt(FAN_IN) < b.abs().max().item() <= 1 / math.sqrt(FAN_IN)),
    ("normal", lambda b: abs(b.std().item() - 0.01) < 0.002),
])  # fmt: skip
def test_bias_init(bias_init, check):
    assert check(first_weight(f"model.bias_init={bias_init}").bias)


def test_auto_bias_follows_the_weight_init():
    bound = 1 / math.sqrt(FAN_IN)
    torch_default = first_weight("model.init=pytorch_default").bias  # bias_init=auto: as nn.Linear does
    assert 0.9 * bound < torch_default.abs().max().item() <= bound
    assert first_weight("model.init=uniform_standard").bias.abs().max().item() == 0
    assert first_weight("model.init=xavier_uniform").bias.abs().max().item() == 0


def test_shapes_width_list_norm_and_residual():
    cfg = make_cfg("model.depth=3", "model.width=[64,32,32]", "model.norm=layernorm", "model.residual=true")
    model = build_model(cfg.model, cfg.activation, 784, 10)
    assert [lin.out_features for lin in model.linears()] == [64, 32, 32, 10]
    assert [layer.residual for layer in model.hidden] == [False, False, True]  # only where widths match
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert isinstance(model.hidden[0].norm, torch.nn.LayerNorm)


def test_residual_adds_the_input():
    cfg = make_cfg("model.depth=2", "model.width=16", "model.residual=true", "activation=relu")
    model = build_model(cfg.model, cfg.activation, 16, 4)
    h = torch.randn(3, 16)
    layer = model.hidden[1]
    torch.testing.assert_close(layer(h), h + torch.relu(layer.linear(h)))


def test_width_list_must_match_depth():
    cfg = make_cfg("model.depth=3", "model.width=[64,32]")
    with pytest.raises(ConfigError, match=r"model.width=\[64, 32\] has 2 entries but model.depth=3"):
        build_model(cfg.model, cfg.activation, 784, 10)


def test_depth_one_hundred_builds_and_runs():
    cfg = make_cfg("model.depth=100", "model.width=8")
    model = build_model(cfg.model, cfg.activation, 784, 10)
    assert len(model.linears()) == 101
    assert torch.isfinite(model(torch.randn(2, 784))).all()
