"""The plain mean-field maps against independent numbers: closed forms, the papers' critical points, and Monte
Carlo on wide random networks (tests/random_networks.py: torch alone)."""

import math

import pytest

from tests.random_networks import averaged, random_network
from vgbench import meanfield
from vgbench.activations import build_activation

RELU, TANH, LINEAR = (build_activation(name) for name in ("relu", "tanh", "linear"))


@pytest.mark.parametrize(("q", "sigma_w2", "sigma_b2"), [(1.5, 2.0, 0.1), (0.3, 1.0, 0.0), (4.0, 3.0, 0.5)])
def test_closed_forms(q, sigma_w2, sigma_b2):
    # ReLU: E[relu(sqrt(q) z)^2] = q / 2 and E[relu'^2] = 1/2; linear: E[(sqrt(q) z)^2] = q, f' = 1
    assert meanfield.length_map(RELU, q, sigma_w2, sigma_b2) == pytest.approx(sigma_w2 * q / 2 + sigma_b2, rel=1e-12)
    assert meanfield.chi(RELU, q, sigma_w2) == pytest.approx(sigma_w2 / 2, rel=1e-12)
    assert meanfield.length_map(LINEAR, q, sigma_w2, sigma_b2) == pytest.approx(sigma_w2 * q + sigma_b2, rel=1e-12)
    assert meanfield.chi(LINEAR, q, sigma_w2) == pytest.approx(sigma_w2, rel=1e-12)


@pytest.mark.slow
def test_the_papers_critical_points():
    assert meanfield.critical_sigma_w2(RELU, 0.0) == pytest.approx(2.0, abs=1e-9)  # He et al.
    assert meanfield.critical_sigma_w2(RELU, 0.3) == pytest.approx(2.0, abs=1e-9)
    assert meanfield.critical_sigma_w2(TANH, 0.05) == pytest.approx(1.76, abs=0.01)  # Schoenholz et al., Fig. 1


def test_phases_of_tanh():
    ordered, chaotic = meanfield.phase(TANH, 1.2, 0.05), meanfield.phase(TANH, 3.0, 0.05)
    assert ordered.chi_1 < 1 and ordered.regime == "ordered (vanishing)" and ordered.c_star == pytest.approx(1.0)
    assert chaotic.chi_1 > 1 and chaotic.regime == "chaotic (exploding)" and chaotic.c_star < 0.5
    assert ordered.xi_c == pytest.approx(-1 / math.log(ordered.chi_c))  # xi_c = -1 / ln chi_c
    critical = meanfield.phase(TANH, 1.7609546, 0.05)
    assert critical.xi_c > 50 * max(ordered.xi_c, chaotic.xi_c)  # depth scales diverge at criticality


MONTE_CARLO = [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.05), ("relu", 1.5, 0.1), ("sigmoid", 4.0, 0.1)]


@pytest.mark.slow
@pytest.mark.parametrize(("activation", "sigma_w2", "sigma_b2"), MONTE_CARLO)
def test_monte_carlo_on_wide_random_networks(activation, sigma_w2, sigma_b2):
    """q^l and the back-propagated error profile of 8 random networks, 1000 wide and 8 deep (averaged:
    a single finite network wanders a few percent per layer), against the maps."""
    f = build_activation(activation)
    depth = 8
    q_measured, error_measured = averaged(
        random_network(f, [1000] * (depth + 2), sigma_w2, sigma_b2, 32, seed) for seed in range(8)
    )
    q_predicted = [sigma_w2 * 1.0 + sigma_b2]
    for _ in range(depth - 1):
        q_predicted.append(meanfield.length_map(f, q_predicted[-1], sigma_w2, sigma_b2))
    assert q_measured == pytest.approx(q_predicted, rel=0.05)
    predicted = [1.0]
    for layer in range(depth - 1, -1, -1):
        predicted.insert(0, predicted[0] * meanfield.chi(f, q_predicted[layer], sigma_w2))
    assert error_measured == pytest.approx(predicted, rel=0.1)


def test_moments_of_relu_in_closed_form():
    # E relu(z) = sqrt(q / (2 pi)), E relu^2 = q / 2, E relu'^2 = E relu'^4 = 1/2, E u^2 relu'^2 / q = 1/2
    moments = meanfield.moments(RELU, 3.0)
    assert moments.mean == pytest.approx(math.sqrt(3.0 / (2 * math.pi)), rel=1e-12)
    assert moments.second == pytest.approx(1.5, rel=1e-12)
    assert (moments.derivative_squared, moments.derivative_fourth) == pytest.approx((0.5, 0.5), rel=1e-12)
    assert moments.u2_derivative_squared == pytest.approx(0.5, rel=1e-12)


def test_dropout_removes_the_critical_point():
    """Schoenholz et al. 2017, section 6: with dropout c* < 1 at every sigma_w^2 and xi_c stays finite; the
    more is dropped the shorter it is."""
    critical = meanfield.critical_sigma_w2(TANH, 0.05)
    scales = [meanfield.phase(TANH, critical, 0.05, keep=keep).xi_c for keep in (1.0, 0.99, 0.9, 0.7)]
    assert scales[0] > 300 and scales[1] < 20  # 1% dropped cuts the depth scale twenty-fold
    assert scales[1] > scales[2] > scales[3] > 1
    for sigma_w2 in (1.0, critical, 3.0):
        with_dropout = meanfield.phase(TANH, sigma_w2, 0.05, keep=0.9)
        assert with_dropout.c_star < 0.999 and with_dropout.xi_c < 5


@pytest.mark.slow
@pytest.mark.parametrize(("activation", "sigma_w2"), [("tanh", 1.5), ("relu", 2.0)])
def test_dropout_maps_on_wide_random_networks(activation, sigma_w2):
    """The length map and chi with dropout 0.3 (inverted: kept units scaled by 1 / 0.7) against 4 random
    networks 1000 wide."""
    f, keep, depth = build_activation(activation), 0.7, 6
    q_measured, error_measured = averaged(
        random_network(f, [1000] * (depth + 2), sigma_w2, 0.05, 32, seed, dropout=1 - keep) for seed in range(4)
    )
    q_predicted = [sigma_w2 + 0.05]
    for _ in range(depth - 1):
        q_predicted.append(meanfield.length_map(f, q_predicted[-1], sigma_w2, 0.05, keep))
    assert q_measured == pytest.approx(q_predicted, rel=0.05)
    predicted = [1.0]
    for layer in range(depth - 1, -1, -1):
        predicted.insert(0, predicted[0] * meanfield.chi(f, q_predicted[layer], sigma_w2, keep))
    assert error_measured == pytest.approx(predicted, rel=0.1)
