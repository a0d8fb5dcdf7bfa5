"""vgbench.montecarlo against random networks built by tests/random_networks.py (no code shared) and against
the mean-field limit where the two should agree."""

import math

import pytest

from tests.random_networks import random_network
from vgbench import montecarlo, theory
from vgbench.activations import build_activation

RELU, TANH = build_activation("relu"), build_activation("tanh")


def typical(profiles):
    """Geometric mean over networks of each layer's |delta_l| / |delta_out| (from squared profiles)."""
    return [math.exp(sum(0.5 * math.log(p[i]) for p in profiles) / len(profiles)) for i in range(len(profiles[0]))]


def test_a_relu_stream_with_skips_matches_independent_random_networks(monkeypatch):
    """ReLU with He init, 128 wide, 12 deep with skips, cross-entropy on batches of 64: the profile of 32
    networks against the geometric mean of 32 independently drawn ones (another generator, another code path),
    within 15% at every layer (ln of one network's ratio spreads by 0.2, so the two means differ by about 5%)."""
    monkeypatch.setattr(montecarlo, "NETWORKS", 32)
    sizes = [784, *[128] * 12, 10]
    predicted = montecarlo.error_profile(RELU, [(2.0, 0.0)] * 13, sizes, 1.0, residual=True).profile
    drawn = typical(
        [
            random_network(RELU, sizes, 2.0, 0.0, 64, 100 + seed, residual=True, cross_entropy=True)[1]
            for seed in range(32)
        ]
    )
    assert predicted == pytest.approx(drawn, rel=0.15)
    # and well above the mean-field limit, 2 per layer of |delta|^2 over the 11 skips
    assert predicted[0] > 1.4 * math.sqrt(2**11)


@pytest.mark.slow
def test_the_excess_over_the_mean_field_limit_shrinks_with_width():
    """The stream's excess is a finite-width effect: 30 ReLU layers with skips exceed the mean-field ratio
    about 45-fold at 128 wide and still about 27-fold at 512 (the onset moves deeper only as ln n)."""
    excess = []
    for width in (128, 512):
        sizes = [784, *[width] * 30, 10]
        prediction = theory.predict_from_variances(RELU, [(2.0, 0.0)] * 31, 1.0, sizes, theory.Options(residual=True))
        excess.append(prediction["delta_ratio"] / prediction["mean_field_delta_ratio"])
    assert 30 < excess[0] < 70 and 10 < excess[1] < excess[0] / 1.4, excess


def test_tanh_with_skips_agrees_with_the_mean_field_limit():
    """An odd activation keeps the stream centred: 500 wide, 10 deep, within 5% of the mean field."""
    sizes = [500] * 12
    prediction = theory.predict_from_variances(TANH, [(1.0, 0.01)] * 11, 1.0, sizes, theory.Options(residual=True))
    assert prediction["delta_ratio"] == pytest.approx(prediction["mean_field_delta_ratio"], rel=0.05)
    assert prediction["finite_width_networks"] == montecarlo.NETWORKS


def test_reproducible_and_bounded():
    sizes = [32, *[64] * 4, 10]
    first = montecarlo.error_profile(RELU, [(2.0, 0.0)] * 5, sizes, 1.0, residual=True)
    assert first == montecarlo.error_profile(RELU, [(2.0, 0.0)] * 5, sizes, 1.0, residual=True)
    assert first.profile[-1] == 1.0 and len(first.profile) == 5 and first.networks == montecarlo.NETWORKS
    assert 0 < first.log_ratio_std < 1
    assert montecarlo.networks([1024] * 4) == montecarlo.NETWORKS  # 3.1M weights each: all 16 networks
    assert montecarlo.networks([2048] * 4) == 7  # 12.6M each: 7 within MAX_WEIGHTS
    assert montecarlo.networks([4096] * 4) == 1  # 50.3M each: one, too few (error_profile gives None)
    assert montecarlo.networks([10_000] * 4) == 0  # 300M: none
    assert montecarlo.error_profile(RELU, [(2.0, 0.0)] * 3, [10_000] * 4, 1.0, residual=True) is None


def test_a_stream_too_wide_keeps_the_mean_field_limit():
    sizes = [784, *[10_000] * 3, 10]
    prediction = theory.predict_from_variances(RELU, [(2.0, 0.0)] * 4, 1.0, sizes, theory.Options(residual=True))
    assert "mean_field_delta_ratio" not in prediction
    # back from |g_3|^2 = 2: |delta_3|^2 = 1, |g_2|^2 = 4, |delta_2|^2 = 2, |g_1|^2 = 8, |delta_1|^2 = 4
    assert prediction["delta_ratio"] == pytest.approx(2.0, rel=1e-9)


def test_batch_norm_is_not_covered():
    with pytest.raises(ValueError, match="batchnorm"):
        montecarlo.error_profile(RELU, [(2.0, 0.0)] * 2, [8, 8, 2], 1.0, norm="batchnorm")
