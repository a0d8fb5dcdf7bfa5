"""The batch-normalised layer's theory against the paper's closed form and Monte Carlo on wide random
networks built from torch alone (tests/random_networks.py)."""

import math

import numpy as np
import pytest

from tests.random_networks import averaged, random_network
from vgbench import meanfield
from vgbench.activations import build_activation
from vgbench.meanfield_batchnorm import batchnorm_layer, growth_per_layer, large_batch_growth

RELU, TANH = build_activation("relu"), build_activation("tanh")


def test_the_relu_rate_at_large_batch_is_the_papers():
    """Yang et al. 2019: ReLU's gradient explosion rate pi / (pi - 1); the Monte Carlo at B = 1024 within 2%,
    and the closed form exact."""
    paper = math.pi / (math.pi - 1)
    assert large_batch_growth(meanfield.moments(RELU, 1.0)) == pytest.approx(paper, rel=1e-12)
    assert growth_per_layer(batchnorm_layer(RELU, 1024)) == pytest.approx(paper, rel=0.02)


def test_smaller_batches_explode_faster():
    rates = [growth_per_layer(batchnorm_layer(RELU, batch)) for batch in (4, 16, 64, 1024)]
    assert rates == sorted(rates, reverse=True) and rates[-1] > 1.4


def test_the_normalised_units_and_their_moments():
    """BN(z) lies on the sphere of radius sqrt(B) orthogonal to 1, so mean_b u_b^2 = 1 exactly: a linear unit's
    second moment is 1 and its batch-centred variance 1; ReLU's centred variance tends to 1/2 - 1/(2 pi)."""
    linear = batchnorm_layer(build_activation("linear"), 32)
    assert linear.second_moment == pytest.approx(1.0, rel=1e-12)
    assert linear.centred_variance == pytest.approx(1.0, rel=1e-12)
    assert np.mean(linear.spread) == pytest.approx(1.0, rel=0.01)
    relu = batchnorm_layer(RELU, 1024)
    assert relu.centred_variance == pytest.approx(0.5 - 1 / (2 * math.pi), rel=0.01)


def test_a_single_example_has_no_batch_statistics():
    with pytest.raises(ValueError, match="at least 2"):
        batchnorm_layer(RELU, 1)


@pytest.mark.slow
@pytest.mark.parametrize(("activation", "batch"), [("relu", 64), ("tanh", 64), ("relu", 8)])
def test_growth_on_wide_random_networks(activation, batch):
    """The error's growth per layer in the middle of random batch-normalised networks 1000 wide, 10 deep, with
    sigma_w^2 = 1 and 3 (the rate does not depend on it), against the Monte Carlo of the theory."""
    f = build_activation(activation)
    predicted = growth_per_layer(batchnorm_layer(f, batch))
    for sigma_w2 in (1.0, 3.0):
        _, squared = averaged(
            random_network(f, [1000] * 12, sigma_w2, 0.0, batch, seed, norm="batchnorm")
            for seed in range(max(2, 48 // batch))  # as many examples in all at each batch size
        )
        measured = (squared[2] / squared[8]) ** (1 / 6)  # six layers away from the input and the output
        assert measured == pytest.approx(predicted, rel=0.03), sigma_w2
