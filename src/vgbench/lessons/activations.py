"""Lesson: the activation functions compared.

gallery      f(z) and f'(z) for every activation in the registry
properties   range, zero-centred, largest |f'|, saturating tails, dead zone, cost: each computed here
bound        the most a stack of L layers can pass back through f' alone, (max |f'|)^L, next to the
             first-to-last gradient ratio the monitor measures on MNIST at step 0
comparison   every activation trained with the same depth and budget through the core trainer:
             test accuracy and the per-layer gradient profile
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from vgbench.activations import ACTIVATIONS, Activation, build_activation
from vgbench.config import compose_config
from vgbench.figures import save_figure
from vgbench.files import write_atomic


def default_activation(name: str) -> Activation:
    """The activation with the parameters of its conf/activation/NAME.yaml."""
    return build_activation(name, dict(compose_config([f"activation={name}"]).activation.params))


def curve(f: Activation, z: torch.Tensor) -> torch.Tensor:
    """f on a 1-D grid. Softmax acts on a vector: it is shown as softmax([z, 0])_0, the two-unit case
    (which is exactly the sigmoid)."""
    if f.name == "softmax":
        return f(torch.stack([z, torch.zeros_like(z)], dim=-1))[..., 0]
    return f(z)


def derivative_curve(f: Activation, z: torch.Tensor) -> torch.Tensor:
    if f.name == "softmax":
        return f.derivative(torch.stack([z, torch.zeros_like(z)], dim=-1))[..., 0]
    return f.derivative(z)


@dataclass
class Properties:
    name: str
    lower: str
    upper: str
    mean_on_standard_normal: float
    zero_centred: bool
    max_derivative: float
    saturating: str
    dead_zone: str
    cost_vs_relu: float


def _range_end(bounded: bool, value: float, infinity: str) -> str:
    return f"{value:.3g}" if bounded else infinity


def cost_vs_baseline(
    f: Activation, baseline: Activation, batch: int = 8192, width: int = 128, repeats: int = 20
) -> float:
    """Time of forward + backward of f over a batch x width layer of float32 pre-activations (the shape
    it meets in an MLP; softmax normalises across the layer's `width` units), relative to `baseline`'s.
    The two are timed alternately, so both see the same machine, and each keeps its best of `repeats`
    (as timeit does): slower repeats measure the machine's noise, not the function."""
    z = torch.randn(batch, width, requires_grad=True)
    best = [math.inf, math.inf]
    for repeat in range(repeats + 2):
        for index, g in enumerate((f, baseline)):
            started = time.perf_counter()
            g(z).sum().backward()
            elapsed = time.perf_counter() - started
            z.grad = None
            if repeat >= 2:  # the first calls pay for allocations
                best[index] = min(best[index], elapsed)
    return best[0] / best[1]


def properties(f: Activation, relu: Activation) -> Properties:
    """Every column of the lesson's table for f, computed; the cost relative to `relu`."""
    grid = torch.linspace(-50, 50, 100_001, dtype=torch.float64)
    values, slopes = curve(f, grid), derivative_curve(f, grid).abs()
    far = curve(f, torch.tensor([-1e8, -1e4, 1e4, 1e8], dtype=torch.float64)).tolist()
    mean = float(curve(f, torch.randn(200_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))).mean())
    left, right = derivative_curve(f, torch.tensor([-30.0, 30.0], dtype=torch.float64)).abs().tolist()
    near = grid.abs() <= 10  # beyond, f' can round to an exact 0 in float64 (tanh: from |z| = 19)
    grid, slopes = grid[near], slopes[near]
    zero_slope = slopes == 0
    middle = len(grid) // 2
    all_zero = {"left": bool(zero_slope[: middle - 10].all()), "right": bool(zero_slope[middle + 10 :].all())}
    # a bounded f levels off: from 1e4 to 1e8 it no longer moves; an unbounded one (even leaky ReLU's
    # 0.01 z) keeps growing
    # (relative to its size there: softsign's 2z / (1 + |z|) still moves by 2e-4 on its way to 2)
    bounded = {
        "left": abs(far[0] - far[1]) < 1e-3 * max(1.0, abs(far[1])),
        "right": abs(far[3] - far[2]) < 1e-3 * max(1.0, abs(far[2])),
    }
    # A saturating tail: f levels off (bounded) and f' fades there. A side where f' is zero all the way
    # from 0 is a dead zone instead (ReLU's z < 0).
    flat = [
        side
        for side, slope in (("left", left), ("right", right))
        if bounded[side] and slope < 1e-3 and not all_zero[side]
    ]
    saturating = {0: "no", 1: f"{flat[0] if flat else ''} tail", 2: "both tails"}[len(flat)]
    if bool(zero_slope.all()):
        dead = "everywhere (f' = 0)"
    elif all_zero["left"] and not bool(zero_slope[middle + 10 :].any()):
        dead = "z < 0"
    elif bool(zero_slope.any()):
        dead = f"|z| >= {float(grid[zero_slope].abs().min()):.3g}"
    else:
        dead = "none"
    return Properties(
        name=f.name,
        lower=_range_end(bounded["left"], min(float(values.min()), far[1]), "-inf"),
        upper=_range_end(bounded["right"], max(float(values.max()), far[2]), "+inf"),
        mean_on_standard_normal=mean,
        zero_centred=abs(mean) < 0.1,
        max_derivative=f.max_derivative,
        saturating=saturating,
        dead_zone=dead,
        cost_vs_relu=cost_vs_baseline(f, relu),
    )


def gallery_figure(names: list[str]) -> Figure:
    columns = 4
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.5 * rows))
    z = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    for index, name in enumerate(names):
        f = default_activation(name)
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.plot(z, curve(f, z), label="f(z)")
        axes.plot(z, derivative_curve(f, z), label="f'(z)", linestyle="--")
        axes.axhline(0, color="gray", linewidth=0.5)
        axes.axvline(0, color="gray", linewidth=0.5)
        axes.set_title(name + (" (2 units)" if name == "softmax" else ""), fontsize=9)
        axes.tick_params(labelsize=7)
        if index == 0:
            axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def compare_on_data(names: list[str], depth: int, overrides: list[str], out_dir: Path) -> dict[str, dict[str, Any]]:
    """Train one model per activation through the core trainer; return each run's summary."""
    from vgbench.train import run

    summaries = {}
    for name in names:
        cfg = compose_config(
            [
                f"activation={name}",
                f"model.depth={depth}",
                "logger.tensorboard=false",
                "trainer.checkpoint=false",
                "trainer.skip_completed=false",
                *overrides,
            ]
        )
        summaries[name] = run(cfg, out_dir / "runs" / name)
    return summaries


def comparison_figure(summaries: dict[str, dict[str, Any]]) -> Figure:
    figure = Figure(figsize=(12, 4))
    axes = figure.add_subplot(1, 2, 1)
    for name, summary in summaries.items():
        norms = summary["profile"]["step0"]["layers"]["grad_norm/weight"]
        axes.semilogy(range(1, len(norms) + 1), [n if n > 0 else float("nan") for n in norms], ".-", label=name)
    axes.set_xlabel("layer (1 = input side)")
    axes.set_ylabel("||dL/dW_l|| at step 0")
    axes.legend(fontsize=7, ncol=2)
    axes = figure.add_subplot(1, 2, 2)
    names = list(summaries)
    axes.barh(names, [summaries[n]["final"]["test_acc"] or 0 for n in names])
    axes.set_xlabel("test accuracy")
    axes.set_xlim(0, 1)
    figure.tight_layout()
    return figure


def quarter_per_layer(summaries: dict[str, dict[str, Any]], depth: int) -> list[str]:
    """Why about 1/4 per sigmoid layer: the back-propagated error's first-to-last ratio three ways, from the
    trained runs' summaries (their step-0 measurement and mean-field prediction, vgbench.theory)."""
    lines = [
        f"## Why about 1/4 per sigmoid layer ({depth} hidden layers)",
        "",
        "The error passed back through layer l is multiplied by f'(z_l) and by the layer's weights. Three",
        "answers for how much of it reaches layer 1, as delta_1 / delta_out:",
        "",
        "- the bound: (max |f'|)^L, f' alone at its largest (sigmoid: 1/4 at z = 0);",
        "- the mean field: sqrt(prod_l chi_l), chi_l = sigma_w^2 E[f'(z_l)^2] over the layer's actual",
        "  pre-activations (vgbench.theory): f' where the units really are, and the weights' scale too;",
        "- the measurement at step 0 (the monitor's delta_norm).",
        "",
        "| activation | bound | mean field | measured | per layer (mean field) |",
        "|---|---|---|---|---|",
    ]
    for name, summary in summaries.items():
        theory = summary.get("theory") or {}
        if not theory.get("applies") or theory.get("measured_delta_ratio") is None:
            continue
        bound = default_activation(name).max_derivative ** depth
        per_layer = theory["delta_ratio"] ** (1 / depth)
        lines.append(
            f"| {name} | {bound:.2e} | {theory['delta_ratio']:.2e} | {theory['measured_delta_ratio']:.2e} | "
            f"{per_layer:.3f} |"
        )
    lines += [
        "",
        "For sigmoid with Xavier weights the units sit near z = 0, where f' is close to its maximum 1/4,",
        "so each layer keeps about a quarter of the error: the bound is nearly reached. ReLU-like units",
        "with Kaiming weights have chi = 1 and pass the error back whole; for tanh it depends on how far",
        "its units reach into the flat tails (the last column: how much each layer keeps).",
    ]
    return lines


def run_lesson(
    out_dir: Path | None = None, names: list[str] | None = None, depth: int = 6, overrides: list[str] | None = None
) -> str:
    """The lesson's text; figures too when `out_dir` is given. `overrides` set the comparison's budget."""
    names = names or list(ACTIVATIONS)
    if overrides is None:
        overrides = [
            "model.width=128",
            "optimizer.lr=0.05",
            "data.limit_train=10000",
            "data.val_size=0",
            "trainer.epochs=1",
        ]
    relu = default_activation("relu")
    table = [properties(default_activation(name), relu) for name in names]
    columns = [
        "activation",
        "range",
        "mean on N(0,1)",
        "zero-centred",
        "max \\|f'\\|",
        "saturating",
        "dead zone",
        "cost (x ReLU)",
    ]
    lines = ["# Activation functions compared", "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += [
        f"| {p.name} | {p.lower} to {p.upper} | {p.mean_on_standard_normal:+.3f} | "
        f"{'yes' if p.zero_centred else 'no'} | {p.max_derivative:.4g} | {p.saturating} | {p.dead_zone} | "
        f"{p.cost_vs_relu:.2f} |"
        for p in table
    ]
    lines += [
        "",
        "Every entry is computed: the range on [-50, 50] and out to +-1e8, the mean of f(z) for z ~ N(0, 1),",
        "max |f'| on a dense grid, tails where |f'(+-30)| < 1e-3, the zero-slope set, and the median time of",
        "forward + backward on a 8192 x 128 layer relative to ReLU on this machine.",
        "",
    ]

    if out_dir is not None:
        summaries = compare_on_data(names, depth, overrides, out_dir)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            summaries = compare_on_data(names, depth, overrides, Path(scratch))
    header = f"| activation | bound (max \\|f'\\|)^{depth} | first-to-last ratio at step 0 | test accuracy | status |"
    lines += [f"## {depth} hidden layers, the same budget ({' '.join(overrides)})", "", header, "|---|---|---|---|---|"]
    for p in table:
        summary = summaries[p.name]
        measured = summary["first_to_last_grad_ratio"]["step0"]
        accuracy = summary["final"]["test_acc"]
        shown = f"{accuracy:.3f}" if accuracy is not None and math.isfinite(accuracy) else "-"
        lines.append(f"| {p.name} | {p.max_derivative**depth:.2e} | {measured:.2e} | {shown} | {summary['status']} |")
    lines += [
        "",
        "The bound counts f' alone: each layer also multiplies by its weights, which the init scales",
        "so that a unit-gain function neither grows nor shrinks the signal (Kaiming, Xavier). Sigmoid's",
        "f' <= 1/4 is what no weight scale in the usual inits makes up for; the binary step passes back",
        "nothing. A diverged run (status) stopped when its loss stopped being finite.",
    ]
    lines += ["", *quarter_per_layer(summaries, depth)]
    text = "\n".join(lines) + "\n"
    if out_dir is not None:
        save_figure(gallery_figure(names), out_dir / "gallery.png")
        save_figure(comparison_figure(summaries), out_dir / "comparison.png")
        write_atomic(out_dir / "summary.md", text.encode())
    return text
