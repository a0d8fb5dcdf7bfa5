"""Naming the gradient flow from more than one number: unit cases, and the four cases on real MNIST."""

import pytest

from tests.conftest import make_cfg
from vgbench.flow import EXPLODING, HEALTHY, VANISHING, VANISHING_EVERYWHERE, classify, describe, learning


def profile(grad_ratio, delta_ratio, grad_to_weight):
    return {
        "first_to_last_grad_ratio": grad_ratio,
        "first_to_last_delta_ratio": delta_ratio,
        "layers": {"grad_to_weight": grad_to_weight},
    }


@pytest.mark.parametrize(
    ("numbers", "kind"),
    [
        ((0.95, 0.9, [1e-7, 2e-7]), VANISHING_EVERYWHERE),  # the ratio alone looks healthy
        ((30.0, 1e5, [0.5, 1.0]), EXPLODING),
        ((0.5, 1e5, [0.5, 1.0]), EXPLODING),  # the error grows toward the input even if one ratio does not
        ((2e-6, 1e-5, [1e-6, 1e-2]), VANISHING),
        ((0.8, 1.2, [1e-2, 3e-2]), HEALTHY),
        ((0.1, 10.0, [1e-2]), HEALTHY),  # the bounds are healthy
    ],
)
def test_classify(numbers, kind):
    assert classify(profile(*numbers))["kind"] == kind


def test_without_a_measurement_there_is_no_flow():
    assert classify(None) is None and classify({}) is None


def test_descriptions_are_right_for_each_sign():
    text = describe(classify(profile(2e-6, 1e3, [1e-2])))
    assert text.startswith("exploding toward the input: ")
    assert "2.0e-06 (5.7 orders of magnitude below) the output layer's" in text
    assert "its back-propagated error is 1.0e+03 (3.0 orders of magnitude above) the output's" in text


def test_learning():
    assert learning("diverged", 2.3, None) == "diverged"
    assert learning("completed", 2.3, 2.0) == "crawled"
    assert learning("completed", 2.3, 0.3) == "learned"
    assert learning("completed", None, 0.3) is None


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        (
            ["activation=tanh", "model.width=500", "model.init=normal", "model.bias_init=zeros", "model.init_std=0.01"],
            VANISHING_EVERYWHERE,
        ),
        (
            ["activation=tanh", "model.width=500", "model.init=normal", "model.bias_init=zeros", "model.init_std=1.0"],
            EXPLODING,
        ),
        (["activation=sigmoid", "model.init=xavier_uniform"], VANISHING),
        (["activation=relu", "model.init=kaiming_normal"], HEALTHY),
    ],
)
def test_the_four_cases_on_mnist(tmp_path, overrides, kind):
    """10 hidden layers on MNIST at step 0: the weight-scale pair of the issue, Xavier sigmoid, Kaiming ReLU."""
    from vgbench.train import run

    summary = run(
        make_cfg(
            *overrides,
            "model.depth=10",
            "data.limit_train=256",
            "data.val_size=0",
            "data.limit_test=256",
            "trainer.epochs=1",
            "trainer.device=cpu",
            "logger.tensorboard=false",
            "trainer.checkpoint=false",
        ),
        tmp_path,
    )
    flow = summary["flow"]
    assert flow["kind"] == kind, flow
    if kind == VANISHING_EVERYWHERE:  # both ends vanish together: the ratio alone reads healthy
        assert 0.1 < flow["grad_ratio"] < 10 and flow["max_grad_to_weight"] < 1e-5
    if kind == EXPLODING:
        assert flow["delta_ratio"] > 1e3
