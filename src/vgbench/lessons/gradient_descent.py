"""Lesson: gradient descent and the learning rate.

The training loop of the course, in words: initialise the weights; forward (compute the output);
error (compare it with the target); backpropagate (the gradient of the error with respect to each
weight); update (step against the gradient, scaled by the learning rate); repeat until the epoch count
is reached or the error falls below a threshold. `gradient_descent` below is that loop, in code.

Two problems where the answer is known exactly:
  1. fitting z = w * x to data: E(w) = 1/2 mean((w x - y)^2), a parabola in w with curvature mean(x^2);
  2. an ill-conditioned 2-D quadratic E(w) = 1/2 (c1 w1^2 + c2 w2^2), curvatures c1 << c2.
On a quadratic, one step maps the error e = w - w* to (1 - lr * c) e along each curvature c, so
gradient descent converges monotonically for lr < 1/c, overshoots and oscillates towards the minimum
for 1/c < lr < 2/c, and diverges for lr > 2/c: the largest stable rate is 2 / (largest curvature).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from vgbench.figures import save_figure
from vgbench.files import write_atomic

TOLERANCE = 1e-6  # |w - w*| (largest component) counted as "reached the minimum"
MAX_ITERATIONS = 200

LossFunction = Callable[[Tensor], Tensor]  # E(w), w a 1-D tensor of weights


@dataclass
class Trajectory:
    lr: float
    weights: list[list[float]]  # w at every iteration, starting with the initial one
    losses: list[float]
    behaviour: str  # converged, oscillating or diverged
    iterations_to_tolerance: int | None  # None: not within MAX_ITERATIONS (or diverged)


def gradient_descent(
    loss_fn: LossFunction, w0: Tensor, lr: float, iterations: int = MAX_ITERATIONS
) -> tuple[Tensor, Tensor]:
    """The course's loop: forward and error (loss_fn), backpropagate (autograd), update; repeat.

    Returns the weights at every iteration and the loss at each.
    """
    w = w0.clone().requires_grad_()  # initialise
    weights, losses = [w.detach().clone()], []
    for _ in range(iterations):
        loss = loss_fn(w)  # forward and error
        (gradient,) = torch.autograd.grad(loss, w)  # backpropagate
        with torch.no_grad():
            w -= lr * gradient  # update
        weights.append(w.detach().clone())
        losses.append(loss.item())
        if not math.isfinite(losses[-1]) or w.detach().abs().max() > 1e12:
            break  # diverged: stop before the numbers overflow
    return torch.stack(weights), torch.tensor(losses, dtype=torch.float64)


def classify(weights: Tensor, minimum: Tensor) -> str:
    """converged (the error shrinks without changing sign), oscillating (it shrinks while jumping past
    the minimum), or diverged (it grows)."""
    errors = weights - minimum
    if not torch.isfinite(errors[-1]).all() or bool((errors[-1].abs() > errors[0].abs()).any()):
        return "diverged"  # some direction's error grew
    signs = torch.sign(errors[:-1]) * torch.sign(errors[1:])
    return "oscillating" if bool((signs < 0).any()) else "converged"


def run_rate(loss_fn: LossFunction, w0: Tensor, minimum: Tensor, lr: float) -> Trajectory:
    weights, losses = gradient_descent(loss_fn, w0, lr)
    behaviour = classify(weights, minimum)
    close = ((weights - minimum).abs().max(dim=1).values < TOLERANCE).nonzero()
    reached = int(close[0]) if len(close) and behaviour != "diverged" else None
    return Trajectory(lr, weights.tolist(), losses.tolist(), behaviour, reached)


def line_fit_problem(seed: int = 0) -> tuple[Tensor, Tensor, float, float]:
    """Data for z = w x: returns (x, y, least-squares w*, curvature mean(x^2))."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(50, generator=generator, dtype=torch.float64)
    y = 2.0 * x + 0.1 * torch.randn(50, generator=generator, dtype=torch.float64)
    return x, y, float((x * y).sum() / (x * x).sum()), float((x * x).mean())


def largest_stable_rate(loss_fn: LossFunction, w0: Tensor, minimum: Tensor, high: float, steps: int = 40) -> float:
    """Bisection for the largest rate whose run does not diverge, searched in (0, high)."""
    low = 0.0
    for _ in range(steps):
        middle = (low + high) / 2
        weights, _ = gradient_descent(loss_fn, w0, middle)
        low, high = (middle, high) if classify(weights, minimum) != "diverged" else (low, middle)
    return low


@dataclass
class LessonResult:
    line_fit: list[Trajectory]
    quadratic: list[Trajectory]
    curvature_1d: float
    curvatures_2d: tuple[float, float]
    stable_rate_1d: float
    stable_rate_2d: float
    text: str


def run_lesson(out_dir: Path | None = None) -> LessonResult:
    x, y, w_star, curvature = line_fit_problem()

    def line_loss(w: Tensor) -> Tensor:
        return 0.5 * ((w[0] * x - y) ** 2).mean()

    w0_1d = torch.tensor([-1.0], dtype=torch.float64)
    minimum_1d = torch.tensor([w_star], dtype=torch.float64)
    bound_1d = 2 / curvature
    # a crawling rate, a good one, one past 1/c (overshoots), one past 2/c (diverges)
    rates_1d = [0.02 / curvature, 0.5 / curvature, 1.6 / curvature, 2.2 / curvature]
    line_fit = [run_rate(line_loss, w0_1d, minimum_1d, lr) for lr in rates_1d]

    curvatures = (1.0, 10.0)
    scale = torch.tensor(curvatures, dtype=torch.float64)

    def quadratic_loss(w: Tensor) -> Tensor:
        return 0.5 * (scale * w**2).sum()

    w0_2d = torch.tensor([-4.0, 1.5], dtype=torch.float64)
    minimum_2d = torch.zeros(2, dtype=torch.float64)
    bound_2d = 2 / max(curvatures)
    rates_2d = [0.01, 0.05, 0.19, 0.21]
    quadratic = [run_rate(quadratic_loss, w0_2d, minimum_2d, lr) for lr in rates_2d]

    stable_1d = largest_stable_rate(line_loss, w0_1d, minimum_1d, 4 * bound_1d)
    stable_2d = largest_stable_rate(quadratic_loss, w0_2d, minimum_2d, 4 * bound_2d)
    text = _summary(line_fit, quadratic, w_star, curvature, curvatures, stable_1d, stable_2d)
    result = LessonResult(line_fit, quadratic, curvature, curvatures, stable_1d, stable_2d, text)
    if out_dir is not None:
        _write(result, out_dir, line_loss, w_star)
    return result


def _table(trajectories: list[Trajectory], bound: float) -> list[str]:
    rows = ["| learning rate | rate / (2/c_max) | behaviour | iterations to reach the minimum |", "|---|---|---|---|"]
    for t in trajectories:
        if t.behaviour == "diverged":
            reached = "diverged"
        else:
            reached = str(t.iterations_to_tolerance) if t.iterations_to_tolerance is not None else f"> {MAX_ITERATIONS}"
        rows.append(f"| {t.lr:.4g} | {t.lr / bound:.2f} | {t.behaviour} | {reached} |")
    return rows


def _summary(
    line_fit: list[Trajectory],
    quadratic: list[Trajectory],
    w_star: float,
    curvature: float,
    curvatures: tuple[float, float],
    stable_1d: float,
    stable_2d: float,
) -> str:
    bound_1d, bound_2d = 2 / curvature, 2 / max(curvatures)
    lines = [
        "# Gradient descent and the learning rate",
        "",
        "The loop: initialise, forward, error, backpropagate, update, repeat until the epoch count or an "
        "error threshold. In code (vgbench.lessons.gradient_descent):",
        "",
        "```python",
        inspect.getsource(gradient_descent).rstrip(),
        "```",
        "",
        f"## 1. Fitting z = w x (least-squares w* = {w_star:.4f}, curvature mean(x^2) = {curvature:.4f})",
        "",
        *_table(line_fit, bound_1d),
        "",
        f"Largest stable rate found by bisection: {stable_1d:.5f}; analytic bound 2/c = {bound_1d:.5f} "
        f"({100 * (stable_1d / bound_1d - 1):+.2f}%).",
        "",
        f"## 2. E(w) = 1/2 ({curvatures[0]:g} w1^2 + {curvatures[1]:g} w2^2): condition number "
        f"{curvatures[1] / curvatures[0]:g}",
        "",
        *_table(quadratic, bound_2d),
        "",
        f"Largest stable rate found by bisection: {stable_2d:.5f}; analytic bound 2/c_max = {bound_2d:.5f} "
        f"({100 * (stable_2d / bound_2d - 1):+.2f}%). The steep direction sets the limit; the shallow one "
        "then crawls: the price of ill-conditioning.",
    ]
    return "\n".join(lines) + "\n"


def _write(result: LessonResult, out_dir: Path, line_loss: LossFunction, w_star: float) -> None:
    figure = Figure(figsize=(11, 3.8))
    axes = figure.add_subplot(1, 2, 1)
    for t in result.line_fit:
        axes.semilogy([max(v, 1e-300) for v in t.losses[:60]], label=f"lr {t.lr:.3g} ({t.behaviour})")
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss E(w)")
    axes.set_title("Loss per iteration")
    axes.legend(fontsize=8)
    axes = figure.add_subplot(1, 2, 2)
    grid = torch.linspace(w_star - 3.5, w_star + 3.5, 200, dtype=torch.float64)
    axes.plot(grid, [line_loss(w.reshape(1)).item() for w in grid], color="black", linewidth=1)
    for t in result.line_fit:
        path = [w[0] for w in t.weights[:12] if abs(w[0] - w_star) < 3.5]
        axes.plot(path, [line_loss(torch.tensor([w])).item() for w in path], "o-", markersize=3, label=f"lr {t.lr:.3g}")
    axes.set_xlabel("w")
    axes.set_ylabel("E(w)")
    axes.set_title("The path of w on the loss curve (first 12 steps)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, out_dir / "line_fit.png")

    figure = Figure(figsize=(6.4, 4.4))
    axes = figure.add_subplot()
    w1, w2 = torch.meshgrid(torch.linspace(-4.5, 4.5, 200), torch.linspace(-2.5, 2.5, 200), indexing="xy")
    axes.contour(
        w1,
        w2,
        0.5 * (result.curvatures_2d[0] * w1**2 + result.curvatures_2d[1] * w2**2),
        levels=20,
        linewidths=0.6,
        colors="gray",
    )
    for t in result.quadratic:
        path = [w for w in t.weights[:40] if abs(w[0]) < 4.5 and abs(w[1]) < 2.5]
        axes.plot([w[0] for w in path], [w[1] for w in path], "o-", markersize=2, label=f"lr {t.lr:g} ({t.behaviour})")
    axes.set_xlabel("w1 (curvature 1)")
    axes.set_ylabel("w2 (curvature 10)")
    axes.set_title("Gradient descent on an ill-conditioned quadratic")
    axes.legend(fontsize=8)
    save_figure(figure, out_dir / "quadratic_paths.png")
    write_atomic(out_dir / "summary.md", result.text.encode())
