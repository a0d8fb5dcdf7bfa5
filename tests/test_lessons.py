"""The course companion: numbers of the worked example, hand-written backprop, gradient descent."""

import math

import pytest
import torch

from vgbench.activations import ACTIVATIONS, build_activation
from vgbench.lessons import main as lesson_main
from vgbench.lessons.backprop import ManualMLP, autograd_gradients, train_xor, two_neuron_example, xor_data
from vgbench.lessons.gradient_descent import classify, run_lesson

# x = 0.1, w1 = 0.15, b1 = 0.4, w2 = 0.45, b2 = 0.65, T = 0.25, lr = 0.4: the course's numbers
COURSE = {
    "z1": 0.415,
    "a1": 0.6023,
    "z2": 0.9210,
    "a2": 0.7153,
    "E": 0.1082,
    "dE/dw2": 0.05707,
    "dE/db2": 0.09476,
    "dE/dw1": 0.001021,
    "dE/db1": 0.01021,
    "w2_new": 0.4272,
    "b2_new": 0.6121,
    "w1_new": 0.14959,
    "b1_new": 0.3959,
}


def significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def test_two_neuron_example_to_four_significant_digits():
    example = two_neuron_example()
    for name, expected in COURSE.items():
        assert significant(example[name], 4) == significant(expected, 4), name
    assert round(example["ratio dE/dw2 : dE/dw1"]) == 56


DIFFERENTIABLE = sorted(set(ACTIVATIONS) - {"binary_step"})


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("activation", DIFFERENTIABLE)
def test_manual_backprop_equals_autograd(activation, loss):
    f = build_activation(
        activation,
        {
            "leaky_relu": {"negative_slope": 0.01},
            "elu": {"alpha": 1.0},
            "softplus": {"beta": 1.0, "threshold": 20.0},
            "hardtanh": {"min_val": -1.0, "max_val": 1.0},
        }.get(activation),
    )
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(12, 5, dtype=torch.float64, generator=generator)
    y = torch.randint(0, 4, (12,), generator=generator)
    for depth in range(1, 7):
        mlp = ManualMLP.random([5, *[6] * depth, 4], f, seed=depth)
        _, weight_grads, bias_grads, _ = mlp.loss_and_gradients(x, y, loss)
        auto_weights, auto_biases = autograd_gradients(mlp, x, y, loss)
        for manual, auto in zip(weight_grads + bias_grads, auto_weights + auto_biases, strict=True):
            torch.testing.assert_close(manual, auto, rtol=0, atol=1e-10)


def test_xor_is_learned_by_hand_written_backprop():
    model, losses = train_xor()
    assert losses[-1] < 0.01 < losses[0]
    assert model.accuracy(*xor_data()) == 1.0


@pytest.mark.slow
def test_gradient_descent_classifies_each_rate():
    result = run_lesson()
    assert [t.behaviour for t in result.line_fit] == ["converged", "converged", "oscillating", "diverged"]
    assert [t.behaviour for t in result.quadratic] == ["converged", "converged", "oscillating", "diverged"]
    slow, good = result.line_fit[0], result.line_fit[1]
    assert slow.iterations_to_tolerance is None  # crawls: not within the budget
    assert good.iterations_to_tolerance is not None and good.iterations_to_tolerance < 50
    for t in result.line_fit + result.quadratic:  # what the theory says for a quadratic
        largest_curvature = result.curvature_1d if t in result.line_fit else max(result.curvatures_2d)
        expected = (
            "converged"
            if t.lr < 1 / largest_curvature
            else "oscillating"
            if t.lr < 2 / largest_curvature
            else "diverged"
        )
        assert t.behaviour == expected
    assert result.stable_rate_1d == pytest.approx(2 / result.curvature_1d, rel=0.05)
    assert result.stable_rate_2d == pytest.approx(2 / max(result.curvatures_2d), rel=0.05)


def test_classify_by_hand():
    minimum = torch.zeros(1, dtype=torch.float64)
    assert classify(torch.tensor([[1.0], [0.5], [0.25]], dtype=torch.float64), minimum) == "converged"
    assert classify(torch.tensor([[1.0], [-0.5], [0.25]], dtype=torch.float64), minimum) == "oscillating"
    assert classify(torch.tensor([[1.0], [-1.5], [2.25]], dtype=torch.float64), minimum) == "diverged"
    assert classify(torch.tensor([[1.0], [math.nan]], dtype=torch.float64), minimum) == "diverged"


@pytest.mark.slow
def test_lesson_command_writes_figures_and_summary(tmp_path, capsys):
    lesson_main(["gradient-descent", "--out", str(tmp_path)])
    assert "Largest stable rate found by bisection" in capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} == {"line_fit.png", "quadratic_paths.png", "summary.md"}


def test_an_unknown_lesson_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        lesson_main(["calculus"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "error: lesson 'calculus' does not exist; choose one of: gradient-descent, backprop, activations\n"
    )


@pytest.mark.slow
def test_activations_lesson_on_synthetic_data(tmp_path):
    from vgbench.lessons.activations import run_lesson as activations_lesson

    text = activations_lesson(
        tmp_path,
        names=["sigmoid", "tanh", "relu"],
        depth=4,
        overrides=["data=synthetic", "model.width=32", "trainer.epochs=1", "trainer.device=cpu"],
    )
    properties_table = text.split("\n## ")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in properties_table.splitlines() if line.startswith("| ")}
    assert "| 0 to 1 | +0.500 | no | 0.25 | both tails | none |" in rows["sigmoid"]
    assert "| -1 to 1 | -0.001 | yes | 1 | both tails | none |" in rows["tanh"]
    assert "| 0 to +inf | +0.398 | no | 1 | no | z < 0 |" in rows["relu"]  # E[relu(z)] = 1/sqrt(2 pi) = 0.399
    assert "3.91e-03" in text  # the bound 0.25^4 for sigmoid, next to its measured ratio
    assert {"gallery.png", "comparison.png", "summary.md"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("leaky_relu", ("-inf", "+inf", "no")),
        ("elu", ("-1", "+inf", "left tail")),
        ("hardtanh", ("-1", "1", "both tails")),
    ],
)
def test_range_tells_a_slow_growth_from_a_bound(name, expected):
    from vgbench.lessons.activations import default_activation, properties

    found = properties(default_activation(name), default_activation("relu"))
    assert (found.lower, found.upper, found.saturating) == expected  # leaky ReLU: 0.01 z is unbounded
