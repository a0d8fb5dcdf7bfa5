"""A network's prediction, option by option, against Monte Carlo on wide random networks built from torch
alone (tests/random_networks.py), Hanin's finite-width constant, and the measurement on MNIST."""

import math
import statistics

import pytest
import torch

from tests.conftest import make_cfg
from tests.random_networks import averaged, random_network
from vgbench import theory
from vgbench.activations import build_activation

RELU, TANH, LINEAR = (build_activation(name) for name in ("relu", "tanh", "linear"))


@pytest.mark.slow
def test_effective_weight_variance_of_each_layer():
    cfg = make_cfg("activation=tanh", "model.init=xavier_uniform", "model.depth=2", "model.width=128")
    sizes = [784, 128, 128, 10]
    variances = theory.layer_variances(cfg, TANH, sizes)
    assert [v[0] for v in variances] == pytest.approx([784 * 2 / 912, 1.0, 128 * 2 / 138])  # not 1 off square
    kaiming = make_cfg("activation=relu", "model.init=kaiming_normal", "model.bias_init=normal", "model.bias_std=0.1")
    assert theory.layer_variances(kaiming, RELU, sizes)[1] == pytest.approx((2.0, 0.01))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["model.norm=batchnorm", "data.batch_size=1"], "single example"),
        (["activation=binary_step"], "f' = 0"),
        (["activation=softmax"], "couples"),
    ],
)
def test_where_the_theory_does_not_apply_it_says_so(overrides, reason):
    cfg = make_cfg(*overrides)
    prediction = theory.predict(
        cfg, build_activation(cfg.activation.name, dict(cfg.activation.params)), [784, 256, 256, 256, 10], 1.0
    )
    assert prediction["applies"] is False and reason in prediction["reason"]


def test_prediction_of_a_relu_stack():
    cfg = make_cfg("activation=relu", "model.init=kaiming_normal", "model.depth=5", "model.width=256")
    prediction = theory.predict(cfg, RELU, [784, *[256] * 5, 10], q0=1.0)
    # Kaiming on ReLU: chi = 1 per hidden layer, except the last, whose error passes back through the
    # output layer's Kaiming weights (sigma_w^2 = 2) too
    assert prediction["chi"] == pytest.approx([1.0] * 5)
    assert prediction["delta_ratio"] == pytest.approx(1.0)
    assert prediction["chi_1"] == pytest.approx(1.0) and prediction["regime"] == "critical"
    # Hanin 2018: Var ln(delta_1 / delta_out) = 5/4 sum_l 1 / n_l for ReLU, whatever the init
    assert prediction["log_ratio_std"] == pytest.approx(math.sqrt(5 / 4 * 5 / 256), rel=1e-9)


OPTIONS = [
    ("relu", 2.0, {"norm": "batchnorm"}),
    ("tanh", 1.0, {"norm": "batchnorm", "batch_size": 32}),
    ("tanh", 1.0, {"norm": "layernorm"}),
    ("relu", 2.0, {"norm": "layernorm"}),
    ("tanh", 1.0, {"residual": True}),
    ("relu", 1.0, {"residual": True}),
    ("tanh", 1.5, {"keep": 0.9}),
    ("tanh", 1.0, {"norm": "layernorm", "residual": True, "keep": 0.9}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("activation", "sigma_w2", "option"), OPTIONS)
def test_each_option_on_wide_random_networks(activation, sigma_w2, option):
    """E z^2 per layer and the error profile of 4 random networks 1000 wide and 10 deep (Gaussian inputs,
    cross-entropy's error at the output, as the prediction assumes) against the prediction, within 10%."""
    f, depth = build_activation(activation), 10
    sizes, batch = [1000] * (depth + 2), option.get("batch_size", 32)
    q_measured, squared = averaged(
        random_network(
            f,
            sizes,
            sigma_w2,
            0.01,
            batch,
            seed,
            norm=option.get("norm", "none"),
            residual=option.get("residual", False),
            dropout=1 - option.get("keep", 1.0),
            cross_entropy=True,
        )
        for seed in range(4)
    )
    prediction = theory.predict_from_variances(
        f, [(sigma_w2, 0.01)] * (depth + 1), 1.0, sizes, theory.Options(**option | {"batch_size": batch})
    )
    assert q_measured == pytest.approx(prediction["q"], rel=0.1)
    assert squared == pytest.approx([d**2 for d in prediction["delta_profile"]], rel=0.1)


def test_batchnorm_grows_whatever_the_init():
    cfg = make_cfg("activation=relu", "model.norm=batchnorm", "model.depth=20", "model.width=256")
    rates = [
        theory.predict_from_variances(RELU, [(w, 0.0)] * 21, 1.0, [784, *[256] * 20, 10], theory.options(cfg))
        for w in (0.5, 2.0, 8.0)
    ]
    assert [r["growth_per_layer"] for r in rates] == pytest.approx([rates[0]["batchnorm_growth"]] * 3, rel=0.01)
    assert all(r["regime"] == "chaotic (exploding)" for r in rates)
    assert rates[0]["depth_to_threshold"] == pytest.approx(2 * math.log(100) / math.log(rates[0]["growth_per_layer"]))


@pytest.mark.slow
@pytest.mark.parametrize(("activation", "sigma_w2", "width"), [("relu", 2.0, 64), ("relu", 1.0, 32), ("tanh", 1.0, 64)])
def test_the_spread_across_seeds_at_finite_width(activation, sigma_w2, width):
    """The variance of ln(delta_1 / delta_out) for one example over 600 random networks 8 deep (the example
    fixed, the weights drawn anew) against
    Hanin's sum over layers; equal depth / width gives equal spread (ReLU: 5/4 per unit of depth / width)."""
    f, depth = build_activation(activation), 8
    sizes = [width] * (depth + 1) + [10]
    x = torch.randn(1, width, generator=torch.Generator().manual_seed(600), dtype=torch.float64)
    x *= math.sqrt(width) / x.norm()  # one example, E x^2 = 1, the same for every draw of the weights
    logs = [0.5 * math.log(random_network(f, sizes, sigma_w2, 0.0, seed=seed, x=x)[1][0]) for seed in range(600)]
    predicted = theory.predict_from_variances(f, [(sigma_w2, 0.0)] * (depth + 1), 1.0, sizes)["log_ratio_std"] ** 2
    if activation == "relu":
        assert predicted == pytest.approx(5 / 4 * depth / width, rel=1e-9)
    # the sample variance of 600 draws is within about 12% of the true one (2 sigma of a chi-square)
    assert statistics.variance(logs) == pytest.approx(predicted, rel=0.15)


def step0_theory(tmp_path, *overrides):
    """A width-256 MNIST run of one small epoch: its summary's theory, the prediction beside step 0."""
    from vgbench.train import run

    summary = run(
        make_cfg(
            "model.width=256",
            "data.limit_train=512",
            "data.val_size=0",
            "data.limit_test=64",
            "trainer.epochs=1",
            "trainer.device=cpu",
            "logger.tensorboard=false",
            "trainer.checkpoint=false",
            *overrides,
        ),
        tmp_path,
    )
    assert summary["theory"]["applies"]
    return summary["theory"]


@pytest.mark.mnist
@pytest.mark.parametrize(
    ("activation", "init"),
    [
        ("sigmoid", "xavier_uniform"),
        ("sigmoid", "gaussian"),
        ("tanh", "xavier_uniform"),
        ("tanh", "orthogonal"),
        ("relu", "kaiming_normal"),
        ("relu", "gaussian"),
    ],
)
def test_prediction_and_measurement_agree_at_initialisation(tmp_path, activation, init):
    """Width 256, depth 10 on MNIST: the measured first-to-last delta ratio is within a factor of 3 of the
    mean-field prediction (the factors measured are in docs/theory.md)."""
    result = step0_theory(
        tmp_path, f"activation={activation}", f"model.init={init}", "model.depth=10", "model.sigma_w2=1.5"
    )
    assert 1 / 3 < result["measured_over_predicted"] < 3, result


OPTIONS_ON_MNIST = [
    ("relu", "model.norm=batchnorm", 30, 64),
    ("relu", "model.norm=batchnorm", 30, 1024),
    ("tanh", "model.norm=batchnorm", 30, 64),
    ("tanh", "model.norm=batchnorm", 10, 1024),
    ("tanh", "model.norm=layernorm", 30, 64),
    ("relu", "model.norm=layernorm", 30, 64),
    ("tanh", "model.residual=true", 30, 64),
    ("relu", "model.residual=true", 30, 64),
    ("tanh", "model.dropout=0.1", 30, 64),
    ("relu", "model.dropout=0.1", 30, 64),
    ("relu", "model.residual=true model.norm=layernorm", 30, 64),
    ("relu", "model.residual=true model.norm=batchnorm", 30, 64),
]


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize(("activation", "option", "depth", "batch"), OPTIONS_ON_MNIST)
def test_each_option_agrees_with_the_measurement_on_mnist(tmp_path, activation, option, depth, batch):
    """Width 256 at step 0: the measured first-to-last delta ratio within a factor of 1.5 of the prediction,
    for each option the MLP offers (every factor measured is in docs/theory.md)."""
    result = step0_theory(
        tmp_path,
        f"activation={activation}",
        *option.split(),
        f"model.depth={depth}",
        f"data.batch_size={batch}",
        f"data.limit_train={batch + 64}",
    )
    assert 1 / 1.5 < result["measured_over_predicted"] < 1.5, result


@pytest.mark.slow
@pytest.mark.mnist
def test_a_relu_stream_with_skips_agrees_across_seeds_on_mnist(tmp_path):
    """ReLU with skips, 30 deep, 256 wide, at step 0 on MNIST for 4 seeds: the typical (geometric mean) measured
    ratio within 1.5 of the finite-width prediction, 20 times the mean-field limit, and each seed's within
    2.5 of the predicted standard deviations of ln(delta_1 / delta_out) across seeds."""
    results = [
        step0_theory(
            tmp_path / str(seed), "activation=relu", "model.residual=true", "model.depth=30", f"trainer.seed={seed}"
        )
        for seed in range(4)
    ]
    logs = [math.log(r["measured_over_predicted"]) for r in results]
    assert 1 / 1.5 < math.exp(statistics.mean(logs)) < 1.5, logs
    assert all(abs(log) < 2.5 * results[0]["log_ratio_std"] for log in logs), logs
    assert results[0]["delta_ratio"] > 15 * results[0]["mean_field_delta_ratio"]


def test_the_command_states_the_monte_carlo_and_the_limit_for_a_stream_with_skips(capsys):
    """vgbench-theory on ReLU with skips, 64 wide and 6 deep: the profile's source, the limit's ratio, and
    the spread across seeds. The limit, He init: |g_6|^2 = 2 |delta_out|^2, each of the 5 skips doubles
    |g|^2 going back, and |delta_l|^2 = |g_l|^2 / 2, so delta_1 / delta_out = sqrt(2^5)."""
    theory.main(["activation=relu", "model.residual=true", "model.depth=6", "model.width=64", "data=synthetic"])
    out = capsys.readouterr().out
    assert "Monte Carlo over 16 random networks of this shape" in out
    assert f"the limit's ratio: {math.sqrt(2**5):.3e}" in out and "spread across seeds (a batch)" in out
