"""The stacked MLP: inits (statistics per scheme), shapes, norms, residual, and K runs equal to K models."""

import math

import pytest
import torch
from torch import nn

from tests.conftest import make_cfg
from vgbench.errors import ConfigError
from vgbench.model import WEIGHT_INITS, build_model

FAN_IN, FAN_OUT = 600, 500  # 300k weights: sample variances land within about 0.3% of the truth


def first_layer(*overrides, activation="relu"):
    cfg = make_cfg(f"activation={activation}", "model.depth=1", f"model.width={FAN_OUT}", *overrides)
    model = build_model([cfg], FAN_IN, 10)
    return model.hidden[0].linear.matrix(0).detach(), model.hidden[0].linear.bias[0].detach(), model


@pytest.mark.parametrize(
    ("init", "activation", "variance"),
    [
        ("xavier_uniform", "sigmoid", 2 / (FAN_IN + FAN_OUT)),
        ("xavier_normal", "sigmoid", 2 / (FAN_IN + FAN_OUT)),
        ("kaiming_uniform", "relu", 2 / FAN_IN),
        ("kaiming_normal", "relu", 2 / FAN_IN),
        ("pytorch_default", "relu", 1 / (3 * FAN_IN)),
        ("uniform_standard", "relu", 1 / (3 * FAN_IN)),
        ("auto", "relu", 2 / FAN_IN),  # Kaiming for ReLU-like units
        ("auto", "gelu", 2 / FAN_IN),
        ("auto", "sigmoid", 2 / (FAN_IN + FAN_OUT)),  # Xavier for the rest
        ("auto", "tanh", 2 / (FAN_IN + FAN_OUT)),
        ("auto", "selu", 1 / FAN_IN),  # LeCun for SELU
        ("orthogonal", "relu", 1 / FAN_IN),  # rows orthonormal: each row has squared norm 1
        ("gaussian", "tanh", 1 / FAN_IN),  # sigma_w^2 = 1 by default
    ],
)
def test_init_variance(init, activation, variance):
    weight, _, model = first_layer(f"model.init={init}", activation=activation)
    assert weight.mean().item() == pytest.approx(0, abs=3 * math.sqrt(variance / weight.numel()) + 1e-12)
    assert weight.var().item() == pytest.approx(variance, rel=0.02)
    # the registry states the variance it draws (the theory reads it)
    model_cfg = make_cfg(f"model.init={init}").model
    assert WEIGHT_INITS[init].variance(FAN_IN, FAN_OUT, model.activation, model_cfg) == pytest.approx(variance)


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
def test_sigma_w2_scales_the_mean_field_inits(init):
    weight, _, _ = first_layer(f"model.init={init}", "model.sigma_w2=1.76", activation="tanh")
    assert weight.var().item() == pytest.approx(1.76 / FAN_IN, rel=0.02)


def test_leaky_relu_kaiming_uses_its_slope():
    """With slope 0.5 Kaiming's gain^2 is 2 / (1 + 0.25) = 1.6, 20% below ReLU's 2: a 2% tolerance tells them apart."""
    weight, _, _ = first_layer(
        "model.init=kaiming_normal", "activation.params.negative_slope=0.5", activation="leaky_relu"
    )
    assert weight.var().item() == pytest.approx(1.6 / FAN_IN, rel=0.02)


def test_uniform_inits_stay_in_their_bounds():
    bound = 1 / math.sqrt(FAN_IN)
    for init in ("uniform_standard", "pytorch_default"):
        weight, _, _ = first_layer(f"model.init={init}")
        assert bound * 0.99 < weight.abs().max().item() <= bound


def test_normal_init_uses_its_std():
    weight, _, _ = first_layer("model.init=normal", "model.init_std=0.05")
    assert weight.std().item() == pytest.approx(0.05, rel=0.01)


def test_orthogonal_rows_are_orthonormal():
    weight, _, _ = first_layer("model.init=orthogonal")
    torch.testing.assert_close(
        weight.double() @ weight.double().T, torch.eye(FAN_OUT, dtype=torch.float64), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize(
    ("bias_init", "check"),
    [
        ("zeros", lambda b: b.abs().max().item() == 0),
        ("pytorch_default", lambda b: 0.9 / math.sqrt(FAN_IN) < b.abs().max().item() <= 1 / math.sqrt(FAN_IN)),
        ("normal", lambda b: abs(b.std().item() - 0.01) < 0.002),
    ],
)
def test_bias_init(bias_init, check):
    assert check(first_layer(f"model.bias_init={bias_init}")[1])


def test_auto_bias_follows_the_weight_init():
    bound = 1 / math.sqrt(FAN_IN)
    assert 0.9 * bound < first_layer("model.init=pytorch_default")[1].abs().max().item() <= bound
    assert first_layer("model.init=uniform_standard")[1].abs().max().item() == 0
    assert first_layer("model.init=xavier_uniform")[1].abs().max().item() == 0


def test_shapes_width_list_norm_and_residual():
    cfg = make_cfg("model.depth=3", "model.width=[64,32,32]", "model.norm=layernorm", "model.residual=true")
    model = build_model([cfg, cfg], 784, 10)
    assert [lin.weight.shape for lin in model.linears()] == [(2, 784, 64), (2, 64, 32), (2, 32, 32), (2, 32, 10)]
    assert [layer.residual for layer in model.hidden] == [False, False, True]  # only where widths match
    assert model(torch.randn(2, 5, 1, 28, 28)).shape == (2, 5, 10)
    assert model.describe() == "64x32x32 relu MLP"


def test_residual_adds_the_input():
    cfg = make_cfg("model.depth=2", "model.width=16", "model.residual=true", "activation=relu")
    model = build_model([cfg], 16, 4)
    h = torch.randn(1, 3, 16)
    layer = model.hidden[1]
    w, b = layer.linear.matrix(0), layer.linear.bias[0]
    torch.testing.assert_close(layer(h), h + torch.relu(h @ w.T + b))


def alone_and_stacked(*overrides, seeds=(0, 1, 2)):
    cfgs = [make_cfg("model.depth=3", "model.width=16", *overrides, f"trainer.seed={s}") for s in seeds]
    return [build_model([cfg], 12, 5) for cfg in cfgs], build_model(cfgs, 12, 5)


@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm"])
def test_each_run_of_a_stack_is_the_model_it_would_be_alone(norm):
    alone, stacked = alone_and_stacked(f"model.norm={norm}")
    x = torch.randn(3, 8, 12)
    for model in (*alone, stacked):
        model.train()
    outputs = stacked(x)
    for k, model in enumerate(alone):
        torch.testing.assert_close(outputs[k], model(x[k : k + 1])[0], rtol=1e-5, atol=1e-6)
    if norm == "batchnorm":  # each run's running statistics are its own batch's
        for k, model in enumerate(alone):
            torch.testing.assert_close(stacked.hidden[0].norm.running_mean[k], model.hidden[0].norm.running_mean[0])
    assert not torch.allclose(outputs[0], outputs[1])  # other seeds, other weights


def test_dropout_masks_come_from_each_runs_seed():
    alone, stacked = alone_and_stacked("model.dropout=0.5")
    x = torch.randn(1, 8, 12)
    stacked.seed_dropout([0, 1, 2], epoch=0, device=torch.device("cpu"))
    outputs = stacked(x.expand(3, -1, -1))
    for k, model in enumerate(alone):
        model.seed_dropout([k], epoch=0, device=torch.device("cpu"))
        torch.testing.assert_close(outputs[k], model(x)[0])
    stacked.seed_dropout([0, 1, 2], epoch=1, device=torch.device("cpu"))
    assert not torch.equal(stacked(x.expand(3, -1, -1)), outputs)  # another epoch, other masks


def test_width_list_must_match_depth():
    cfg = make_cfg("model.depth=3", "model.width=[64,32]")
    with pytest.raises(ConfigError, match=r"model.width=\[64, 32\] has 2 entries but model.depth=3"):
        build_model([cfg], 784, 10)


def test_depth_one_hundred_builds_and_runs():
    cfg = make_cfg("model.depth=100", "model.width=8")
    model = build_model([cfg], 784, 10)
    assert len(model.linears()) == 101
    assert torch.isfinite(model(torch.randn(1, 2, 784))).all()


def global_draw(init: str, weight: torch.Tensor, cfg) -> None:
    """What nn.init draws for each init from the global generator, as the runs were drawn before."""
    fan_in = weight.shape[1]
    {
        "xavier_normal": lambda: nn.init.xavier_normal_(weight),
        "kaiming_uniform": lambda: nn.init.kaiming_uniform_(weight, a=0, nonlinearity="relu"),
        "orthogonal": lambda: nn.init.orthogonal_(weight, gain=math.sqrt(cfg.model.sigma_w2)),
        "normal": lambda: nn.init.normal_(weight, 0.0, cfg.model.init_std),
        "gaussian": lambda: nn.init.normal_(weight, 0.0, math.sqrt(cfg.model.sigma_w2 / fan_in)),
    }[init]()


@pytest.mark.parametrize(
    "init", ["pytorch_default", "xavier_normal", "kaiming_uniform", "orthogonal", "normal", "gaussian"]
)
def test_runs_drawn_on_several_threads_are_the_runs_torch_manual_seed_draws(init):
    """Each run draws from a generator of its own, so a stack's runs can be drawn on threads at once: the same
    weights as on one thread, the same as torch.manual_seed(seed) and nn.init on the global generator (nn.Linear
    itself for pytorch_default), and the global generator left as it was."""
    overrides = ["model.depth=3", "model.width=16", "activation=relu", f"model.init={init}", "model.sigma_w2=1.7"]
    bias = "auto" if init == "pytorch_default" else "normal"
    cfgs = [make_cfg(*overrides, f"model.bias_init={bias}", f"trainer.seed={s}") for s in (3, 1, 4, 1, 5)]
    before = torch.random.get_rng_state()
    threaded, serial = build_model(cfgs, 12, 5, threads=4), build_model(cfgs, 12, 5)
    assert torch.equal(torch.random.get_rng_state(), before)
    for run, cfg in enumerate(cfgs):
        torch.manual_seed(cfg.trainer.seed)
        for linear in threaded.linears():
            if init == "pytorch_default":
                expected = nn.Linear(linear.in_features, linear.out_features)
                weight, bias_values = expected.weight.detach(), expected.bias.detach()
            else:
                weight = torch.empty(linear.out_features, linear.in_features)
                global_draw(init, weight, cfg)
                bias_values = nn.init.normal_(torch.empty(linear.out_features), 0.0, cfg.model.bias_std)
            assert torch.equal(linear.weight[run], weight.T) and torch.equal(linear.bias[run], bias_values)
    for a, b in zip(threaded.parameters(), serial.parameters(), strict=True):
        assert torch.equal(a, b)
