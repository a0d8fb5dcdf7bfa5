"""The mean-field theory against independent numbers: closed forms, the papers' critical points, and Monte
Carlo on wide random networks; then its prediction beside the measurement on MNIST."""

import math

import pytest
import torch

from tests.conftest import make_cfg
from vgbench import theory
from vgbench.activations import build_activation

RELU, TANH, LINEAR = (build_activation(name) for name in ("relu", "tanh", "linear"))


@pytest.mark.parametrize(("q", "sigma_w2", "sigma_b2"), [(1.5, 2.0, 0.1), (0.3, 1.0, 0.0), (4.0, 3.0, 0.5)])
def test_closed_forms(q, sigma_w2, sigma_b2):
    # ReLU: E[relu(sqrt(q) z)^2] = q / 2 and E[relu'^2] = 1/2; linear: E[(sqrt(q) z)^2] = q, f' = 1
    assert theory.length_map(RELU, q, sigma_w2, sigma_b2) == pytest.approx(sigma_w2 * q / 2 + sigma_b2, rel=1e-12)
    assert theory.chi(RELU, q, sigma_w2) == pytest.approx(sigma_w2 / 2, rel=1e-12)
    assert theory.length_map(LINEAR, q, sigma_w2, sigma_b2) == pytest.approx(sigma_w2 * q + sigma_b2, rel=1e-12)
    assert theory.chi(LINEAR, q, sigma_w2) == pytest.approx(sigma_w2, rel=1e-12)


@pytest.mark.slow
def test_the_papers_critical_points():
    assert theory.critical_sigma_w2(RELU, 0.0) == pytest.approx(2.0, abs=1e-9)  # He et al.
    assert theory.critical_sigma_w2(RELU, 0.3) == pytest.approx(2.0, abs=1e-9)
    assert theory.critical_sigma_w2(TANH, 0.05) == pytest.approx(1.76, abs=0.01)  # Schoenholz et al., Fig. 1


def test_phases_of_tanh():
    ordered, chaotic = theory.phase(TANH, 1.2, 0.05), theory.phase(TANH, 3.0, 0.05)
    assert ordered.chi_1 < 1 and ordered.regime == "ordered (vanishing)" and ordered.c_star == pytest.approx(1.0)
    assert chaotic.chi_1 > 1 and chaotic.regime == "chaotic (exploding)" and chaotic.c_star < 0.5
    assert ordered.xi_c == pytest.approx(-1 / math.log(ordered.chi_c))  # xi_c = -1 / ln chi_c
    critical = theory.phase(TANH, 1.7609546, 0.05)
    assert critical.xi_c > 50 * max(ordered.xi_c, chaotic.xi_c)  # depth scales diverge at criticality


def random_network(f, sigma_w2, sigma_b2, width, depth, examples, seed):
    """One random network on Gaussian inputs (q0 = 1): its pre-activations' q per layer, and the squared
    error ||delta_l||^2 per hidden layer (relative to the output's) for a random output error."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(examples, width, generator=generator, dtype=torch.float64)
    weights = [
        torch.randn(width, width, generator=generator, dtype=torch.float64) * math.sqrt(sigma_w2 / width)
        for _ in range(depth + 1)
    ]
    biases = [
        torch.randn(width, generator=generator, dtype=torch.float64) * math.sqrt(sigma_b2) for _ in range(depth + 1)
    ]
    zs, h = [], x
    for layer in range(depth):
        zs.append(h @ weights[layer].T + biases[layer])
        h = f(zs[-1])
    delta = torch.randn(examples, width, generator=generator, dtype=torch.float64)
    squared = [float((delta**2).sum(1).mean())]
    for layer in range(depth - 1, -1, -1):
        delta = (delta @ weights[layer + 1]) * f.derivative(zs[layer])
        squared.insert(0, float((delta**2).sum(1).mean()))
    return [float((z**2).mean()) for z in zs], [s / squared[-1] for s in squared]


MONTE_CARLO = [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.05), ("relu", 1.5, 0.1), ("sigmoid", 4.0, 0.1)]


@pytest.mark.slow
@pytest.mark.parametrize(("activation", "sigma_w2", "sigma_b2"), MONTE_CARLO)
def test_monte_carlo_on_wide_random_networks(activation, sigma_w2, sigma_b2):
    """q^l and the back-propagated error profile of 8 random networks, 1000 wide and 8 deep (averaged:
    a single finite network wanders a few percent per layer), against the maps."""
    f = build_activation(activation)
    depth = 8
    nets = [random_network(f, sigma_w2, sigma_b2, 1000, depth, 32, seed) for seed in range(8)]
    q_measured = [sum(net[0][layer] for net in nets) / len(nets) for layer in range(depth)]
    error_measured = [sum(net[1][layer] for net in nets) / len(nets) for layer in range(depth + 1)]
    q_predicted = [sigma_w2 * 1.0 + sigma_b2]
    for _ in range(depth - 1):
        q_predicted.append(theory.length_map(f, q_predicted[-1], sigma_w2, sigma_b2))
    assert q_measured == pytest.approx(q_predicted, rel=0.05)
    predicted = [1.0]
    for layer in range(depth - 1, -1, -1):
        predicted.insert(0, predicted[0] * theory.chi(f, q_predicted[layer], sigma_w2))
    assert error_measured == pytest.approx(predicted, rel=0.1)


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
        (["model.norm=batchnorm"], "renormalises"),
        (["model.residual=true"], "skip connections"),
        (["model.dropout=0.1"], "dropout"),
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
    from vgbench.train import run

    summary = run(
        make_cfg(
            f"activation={activation}",
            f"model.init={init}",
            "model.depth=10",
            "model.width=256",
            "model.sigma_w2=1.5",
            "data.limit_train=512",
            "data.val_size=0",
            "data.limit_test=256",
            "trainer.epochs=1",
            "trainer.device=cpu",
            "logger.tensorboard=false",
            "trainer.checkpoint=false",
        ),
        tmp_path,
    )
    result = summary["theory"]
    assert result["applies"]
    assert 1 / 3 < result["measured_over_predicted"] < 3, result
