"""The report's figures, chosen by the sweep's shape: the x axis is a numeric swept key (log scale where its
values span decades), one line per combination of the other keys, a panel per line where a figure shows
one curve per x value. Seeds are averaged: ratios by geometric mean with a min-to-max band, accuracy by
mean with a standard-deviation bar. What a run did not record (the monitor off) is said on the figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure

from vgbench.flow import CRAWLED, DIVERGED, EXPLODING_RATIO, LEARNED, VANISHING_RATIO, learning
from vgbench.report.load import Group, Run, Sweep, log_mean_spread, mean_spread, variance_interval

MAX_PANELS = 6


def _log_axis(values: list[Any]) -> bool:
    positive = [v for v in values if isinstance(v, (int, float)) and v > 0]
    return len(positive) == len(values) and len(values) > 1 and max(positive) / min(positive) >= 100


def _x(sweep: Sweep, group: Group) -> Any:  # a number, or a position for a categorical axis
    if sweep.x_key is None:
        return 0
    value = group.settings[sweep.x_key]
    return value if sweep.numeric_x else sweep.x_values().index(value)


def _x_axis(axes: Any, sweep: Sweep) -> None:
    values = sweep.x_values()
    if sweep.x_key is None:
        axes.set_xticks([0], ["all runs"])
        return
    if sweep.numeric_x:
        if _log_axis(values):
            axes.set_xscale("log")
        axes.set_xticks(values, [f"{v:g}" for v in values])
        axes.minorticks_off()
    else:
        axes.set_xticks(range(len(values)), [str(v) for v in values], rotation=20, fontsize=8)
    axes.set_xlabel(sweep.x_key)


def _note(axes: Any, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, fontsize=9, color="gray")


def ratio_figure(sweep: Sweep) -> Figure:
    """The step-0 first-to-last ratios against x: the weight gradient's and the back-propagated error's."""
    figure = Figure(figsize=(11, 4.2))
    for column, (kind, label) in enumerate((("grad", "||dL/dW_1|| / ||dL/dW_out||"), ("delta", "delta_1 / delta_out"))):
        axes = figure.add_subplot(1, 2, column + 1)
        drawn = False
        for settings, groups in sweep.lines():
            points = [(_x(sweep, g), log_mean_spread([r.ratio("step0", kind) for r in g.runs])) for g in groups]
            points = [(x, s) for x, s in points if s is not None]
            if not points:
                continue
            drawn = True
            xs = [x for x, _ in points]
            line = axes.plot(xs, [s[0] for _, s in points], "o-", label=sweep.line_label(settings))[0]
            axes.fill_between(
                xs, [s[1] for _, s in points], [s[2] for _, s in points], color=line.get_color(), alpha=0.2
            )
        if drawn:
            axes.set_yscale("log")
            for level, style in ((1.0, "-"), (VANISHING_RATIO, ":"), (EXPLODING_RATIO, ":")):
                axes.axhline(level, color="gray", linewidth=0.8, linestyle=style)
            axes.legend(fontsize=7)
        else:
            _note(axes, "not recorded (monitor.enabled=false)")
        _x_axis(axes, sweep)
        axes.set_ylabel(f"{label} at step 0")
        axes.set_title(
            f"{'weight gradient' if kind == 'grad' else 'back-propagated error'}: first layer / output", fontsize=10
        )
    figure.tight_layout()
    return figure


def accuracy_figure(sweep: Sweep, chance: float) -> Figure:
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    for settings, groups in sweep.lines():
        points = [(_x(sweep, g), mean_spread([r.final("test_acc") for r in g.runs])) for g in groups]
        points = [(x, s) for x, s in points if s is not None]
        if points:
            axes.errorbar(
                [x for x, _ in points],
                [s[0] for _, s in points],
                yerr=[s[1] for _, s in points],
                fmt="o-",
                capsize=3,
                label=sweep.line_label(settings),
            )
    axes.axhline(chance, color="gray", linestyle="--", linewidth=0.8, label="chance")
    _x_axis(axes, sweep)
    axes.set_ylabel("test accuracy")
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7)
    return figure


def final_loss_figure(sweep: Sweep) -> Figure:
    """The final training loss against x, each point marked by what training did (crawled, learned,
    diverged: vgbench.flow.learning), so a learning-rate sweep shows its three regimes."""
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    markers = {LEARNED: ("o", "tab:green"), CRAWLED: ("s", "tab:orange"), DIVERGED: ("x", "tab:red")}
    labelled: set[str] = set()
    for settings, groups in sweep.lines():
        means = []
        for group in groups:
            finished = []
            for run in group.runs:
                first = run.batch_losses[0][1] if run.batch_losses else None
                final = run.final("train_loss")
                behaviour = learning(run.status, first, final)
                y = final if final is not None and math.isfinite(final) else (first or 1.0) * 10
                marker, colour = markers.get(behaviour, (".", "gray"))
                label = behaviour if behaviour and behaviour not in labelled else None
                labelled.add(behaviour or "")
                axes.scatter([_x(sweep, group)], [y], marker=marker, color=colour, label=label, zorder=3)
                if run.status != DIVERGED:
                    finished.append(y)
            stats = log_mean_spread(finished)
            if stats:
                means.append((_x(sweep, group), stats[0]))
        if means:
            axes.plot(
                [m[0] for m in means],
                [m[1] for m in means],
                "-",
                linewidth=0.8,
                alpha=0.6,
                label=f"{sweep.line_label(settings)} (mean)",
            )
    axes.set_yscale("log")
    _x_axis(axes, sweep)
    axes.set_ylabel("final training loss (diverged: drawn above)")
    if axes.get_legend_handles_labels()[0]:  # none where every run failed
        axes.legend(fontsize=7)
    return figure


def steps_to_target_figure(sweep: Sweep) -> Figure | None:
    """Steps to each target against x, a panel per target: the mean over the seeds that met it with their
    min-to-max band; each run that never met it is a cross above the scale (at its step budget x 1.5), so a
    line that stops short of the right edge shows where training no longer got there. None without targets."""
    targets = sweep.targets[:MAX_PANELS]
    if not targets:
        return None
    figure = Figure(figsize=(6.4 * len(targets), 4.2))
    for column, target in enumerate(targets):
        axes = figure.add_subplot(1, len(targets), column + 1)
        budget = max((run.summary.get("steps") or 1 for run in sweep.runs), default=1)
        never_y, never_labelled = budget * 1.5, False
        for index, (settings, groups) in enumerate(sweep.lines()):
            points, nevers, colour = [], [], f"C{index % 10}"  # a line's colour, whether or not it met the target
            for group in groups:
                steps, recorded = group.steps_to(target)
                nevers += [_x(sweep, group)] * (recorded - len(steps))
                if steps:
                    points.append((_x(sweep, group), sum(steps) / len(steps), min(steps), max(steps)))
            if points:
                xs = [p[0] for p in points]
                axes.plot(xs, [p[1] for p in points], "o-", color=colour, label=sweep.line_label(settings))
                axes.fill_between(xs, [p[2] for p in points], [p[3] for p in points], color=colour, alpha=0.2)
            if nevers:
                label = None if never_labelled else "never met (above the dotted step budget)"
                axes.scatter(nevers, [never_y] * len(nevers), marker="x", color=colour, label=label, zorder=3)
                never_labelled = True
        if never_labelled:
            axes.axhline(budget, color="gray", linestyle=":", linewidth=0.8)
        axes.set_yscale("log")
        _x_axis(axes, sweep)
        axes.set_ylabel(f"steps to {target}")
        axes.set_title(f"steps until {target} first held", fontsize=10)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def _panels(sweep: Sweep, draw: Callable[[Any, list[Group]], None], title: str, height: float = 3.2) -> Figure:
    """One panel per line (up to MAX_PANELS); `draw(axes, groups)` draws a curve per x value."""
    lines = sweep.lines()[:MAX_PANELS]
    figure = Figure(figsize=(3.4 * max(1, len(lines)), height))
    for column, (settings, groups) in enumerate(lines):
        axes = figure.add_subplot(1, len(lines), column + 1)
        draw(axes, groups)
        axes.set_title(f"{sweep.line_label(settings)}: {title}", fontsize=9)
        axes.tick_params(labelsize=7)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=6)
    figure.tight_layout()
    return figure


def _curve_label(sweep: Sweep, group: Group) -> str:
    return f"{sweep.x_key.split('.')[-1]}={group.settings[sweep.x_key]}" if sweep.x_key else "runs"


def _finish(axes: Any, drawn: bool, xlabel: str, ylabel: str) -> None:
    if drawn:
        axes.set_yscale("log")
    else:
        _note(axes, "not recorded (monitor.enabled=false)")
    axes.set_xlabel(xlabel, fontsize=8)
    axes.set_ylabel(ylabel, fontsize=8)


def profiles_figure(
    sweep: Sweep,
    which: str,
    metric: str = "grad_norm/weight",
    ylabel: str = "||dL/dW_l||",
    overlay: Callable[[Any, Run, str], None] | None = None,
) -> Figure:
    """A per-layer metric (step 0 or the end) for the first seed of each group; `overlay(axes, run,
    colour)` may draw more on each curve (the theory's prediction, dashed)."""

    def draw(axes: Any, groups: list[Group]) -> None:
        drawn = False
        for group in groups:
            values = group.runs[0].profile(which, metric)
            if values:
                drawn = True
                line = axes.plot(
                    range(1, len(values) + 1),
                    [v if v and v > 0 else float("nan") for v in values],
                    ".-",
                    label=_curve_label(sweep, group),
                )[0]
                if overlay:
                    overlay(axes, group.runs[0], line.get_color())
        _finish(axes, drawn, "layer (1 = input side)", ylabel)

    return _panels(sweep, draw, "step 0" if which == "step0" else "end", height=3.4)


def predicted_deltas(axes: Any, run: Run, colour: str) -> None:
    """The mean-field profile of the back-propagated error, anchored at the measured output layer: dashed."""
    theory = run.summary.get("theory") or {}
    measured = run.profile("step0", "delta_norm")
    if theory.get("applies") and measured and measured[-1]:
        predicted = [measured[-1] * d for d in theory["delta_profile"]]
        axes.plot(range(1, len(predicted) + 1), predicted, "--", color=colour, linewidth=1)


def learning_curves_figure(sweep: Sweep) -> Figure:
    def draw(axes: Any, groups: list[Group]) -> None:
        drawn = False
        for group in groups:
            points = group.runs[0].batch_losses
            if points:
                drawn = True
                axes.plot([p[0] for p in points], [p[1] for p in points], label=_curve_label(sweep, group), linewidth=1)
        _finish(axes, drawn, "step", "training loss (batch)")

    return _panels(sweep, draw, "learning curves")


def units_figure(sweep: Sweep) -> Figure:
    """Saturated units (|f'| < 1% of its maximum) and dead units per hidden layer, at the end."""

    def draw(axes: Any, groups: list[Group]) -> None:
        drawn = False
        for group in groups:
            run = group.runs[0]
            for metric, style in (("activation/saturated", "-"), ("activation/dead", "--")):
                values = run.profile("final", metric)
                if values and any(values):
                    drawn = True
                    axes.plot(
                        range(1, len(values) + 1),
                        values,
                        style,
                        marker=".",
                        label=f"{_curve_label(sweep, group)} {metric.split('/')[1]}",
                    )
        if not drawn:
            _note(axes, "none saturated or dead (or not recorded)")
        axes.set_ylim(-0.02, 1.02)
        axes.set_xlabel("hidden layer", fontsize=8)
        axes.set_ylabel("share of units", fontsize=8)

    return _panels(sweep, draw, "saturated (-), dead (--)")


def _log_grid(run: Run) -> tuple[list[int], list[list[float]]]:
    """(measured steps, log10 ||dL/dW|| as rows = layers from the input, columns = steps)."""
    steps = sorted({int(r["step"]) for r in run.layers})
    n_layers = len({int(r["layer"]) for r in run.layers})
    grid = [[float("nan")] * len(steps) for _ in range(n_layers)]
    index = {s: i for i, s in enumerate(steps)}
    for row in run.layers:
        value = row.get("grad_norm/weight")
        if isinstance(value, (int, float)) and value > 0:
            grid[int(row["layer"]) - 1][index[int(row["step"])]] = math.log10(value)
    return steps, grid


def heatmap_runs(sweep: Sweep) -> list[Run]:
    """The groups whose first-to-last ratio is smallest and largest (the first seed of each)."""
    ranked = sorted(
        (g for g in sweep.groups if g.runs[0].layers and g.runs[0].ratio() is not None), key=lambda g: g.runs[0].ratio()
    )
    picks = [ranked[0], ranked[-1]] if len(ranked) > 1 else ranked
    return [g.runs[0] for g in picks]


def heatmap_figure(sweep: Sweep) -> Figure:
    """log10 ||dL/dW_l|| over (training step, layer), on one colour scale so the panels compare."""
    runs = heatmap_runs(sweep)
    figure = Figure(figsize=(5.2 * max(1, len(runs)), 3.8))
    if not runs:
        _note(figure.add_subplot(), "not recorded (monitor.enabled=false)")
        return figure
    grids = [_log_grid(run) for run in runs]
    values = [v for _, grid in grids for row in grid for v in row if math.isfinite(v)]
    scale = {"vmin": min(values), "vmax": max(values)} if values else {}
    for column, (run, (steps, grid)) in enumerate(zip(runs, grids, strict=True)):
        axes = figure.add_subplot(1, len(runs), column + 1)
        extent = (steps[0], steps[-1], 0.5, len(grid) + 0.5) if steps else None
        image = axes.imshow(
            grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest", extent=extent, **scale
        )
        figure.colorbar(image, ax=axes, label="log10 ||dL/dW_l||")
        group = next(g for g in sweep.groups if run in g.runs)
        axes.set_title(group.label(), fontsize=9)
        axes.set_xlabel("step")
        axes.set_ylabel("layer (1 = input side)")
    figure.tight_layout()
    return figure


def criticality_figure(sweep: Sweep, chance: float) -> Figure | None:
    """Trained test accuracy over (sigma_w^2, depth), with the mean-field bound depth = 6 xi_c(sigma_w^2)
    (Schoenholz et al. 2017, Fig. 5): networks train below the curve. One panel per value of any other swept
    key (dropout rates: the bound moves). None unless the sweep varies both."""
    grid_keys = ("model.sigma_w2", "model.depth")
    if not set(grid_keys) <= set(sweep.swept):
        return None
    others = [k for k in sweep.swept if k not in grid_keys]
    panels: dict[tuple[Any, ...], list[Group]] = {}
    for group in sweep.groups:
        panels.setdefault(tuple(group.settings[k] for k in others), []).append(group)
    shown = sorted(panels.items(), key=lambda item: [str(v) for v in item[0]])[:MAX_PANELS]
    figure = Figure(figsize=(6.5 * len(shown) if len(shown) == 1 else 4.6 * len(shown), 4.5))
    for column, (values, groups) in enumerate(shown):
        axes = figure.add_subplot(1, len(shown), column + 1)
        _criticality_panel(figure, axes, groups, chance)
        if others:
            axes.set_title(", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, values, strict=True)))
    figure.tight_layout()
    return figure


def _criticality_panel(figure: Figure, axes: Any, groups: list[Group], chance: float) -> None:
    widths = sorted({g.settings["model.sigma_w2"] for g in groups})
    depths = sorted({g.settings["model.depth"] for g in groups})
    grid = [[float("nan")] * len(widths) for _ in depths]
    bound: dict[float, float] = {}
    for group in groups:
        stats = mean_spread([r.final("test_acc") for r in group.runs])
        grid[depths.index(group.settings["model.depth"])][widths.index(group.settings["model.sigma_w2"])] = (
            stats[0] if stats else float("nan")
        )
        trainable_depth = (group.runs[0].summary.get("theory") or {}).get("trainable_depth")
        if trainable_depth is not None:
            bound[group.settings["model.sigma_w2"]] = trainable_depth
    image = axes.pcolormesh(widths, depths, grid, shading="nearest", cmap="viridis", vmin=chance, vmax=1)
    figure.colorbar(image, ax=axes, label="test accuracy")
    if bound:
        xs = sorted(bound)
        axes.plot(xs, [bound[x] for x in xs], "w--", linewidth=2, label="6 xi_c (mean field): trainable below")
        axes.legend(loc="upper right", fontsize=7)
    axes.set_ylim(min(depths) - 0.5 * (depths[1] - depths[0]) if len(depths) > 1 else 0, max(depths) * 1.05)
    axes.set_xlabel("model.sigma_w2")
    axes.set_ylabel("model.depth")


def finite_width_figure(sweep: Sweep) -> Figure | None:
    """The variance of ln(delta_1 / delta_out) across each group's seeds at step 0 (dots, with their 95%
    sampling interval) beside the predicted one (crosses; Hanin 2018) against sum_l 1 / n_l, the quantity
    that sets it. None unless some group has a prediction of the spread and at least 8 seeds."""
    points = []
    for group in sweep.groups:
        theory = group.runs[0].summary.get("theory") or {}
        ratios = [(r.summary.get("theory") or {}).get("measured_delta_ratio") or 0 for r in group.runs]
        interval = variance_interval([math.log(v) for v in ratios if v > 0])
        if theory.get("log_ratio_std") is not None and interval and len(group.runs) >= 8:
            points.append((theory["sum_inverse_widths"], theory["log_ratio_std"] ** 2, interval, group.label()))
    if not points:
        return None
    figure = Figure(figsize=(6.5, 4.2))
    axes = figure.add_subplot()
    for index, (x, predicted, (measured, low, high), label) in enumerate(sorted(points)):
        axes.errorbar(
            x,
            measured,
            yerr=[[measured - low], [high - measured]],
            fmt="o",
            capsize=3,
            color=f"C{index % 10}",
            label=label,
        )
        axes.plot(x, predicted, "kx", markersize=8)
    axes.plot([], [], "kx", label="predicted (Hanin)")
    axes.set_xlabel("sum over hidden layers of 1 / width")
    axes.set_ylabel("variance of ln(delta_1 / delta_out) across seeds")
    axes.legend(fontsize=6, ncol=2)
    return figure


def spectra_figure(sweep: Sweep) -> Figure | None:
    """The distribution of the hidden stack's Jacobian singular values at step 0 (monitor.jacobian), one
    panel per line, one curve per x value: dynamical isometry keeps them near 1. None without them."""
    if not any(r.summary.get("jacobian") for r in sweep.runs):
        return None

    def draw(axes: Any, groups: list[Group]) -> None:
        for group in groups:
            spectrum = group.runs[0].summary.get("jacobian")
            if spectrum:
                quantiles = spectrum["singular_quantiles"]
                shares = [i / (len(quantiles) - 1) for i in range(len(quantiles))]
                axes.plot([max(q, 1e-12) for q in quantiles], shares, label=_curve_label(sweep, group))
        axes.set_xscale("log")
        axes.axvline(1.0, color="gray", linewidth=0.8)
        axes.set_xlabel("singular value of dh_L/dh_1", fontsize=8)
        axes.set_ylabel("share below", fontsize=8)

    return _panels(sweep, draw, "Jacobian at step 0")
