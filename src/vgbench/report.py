"""The sweep report: `vgbench-report <sweep folder>` reads every run's summary.json and CSV series
(never TensorBoard's event files) and writes, into the folder, results.csv, report.md, report.html
(self-contained: figures embedded) and the figures as PNG files:

  1. headline.png          first_to_last_grad_ratio at step 0 against depth, one line per activation
  2. profiles.png          per-layer weight-gradient norm at step 0 and at the end, one panel per activation
  3. accuracy.png          test accuracy against depth; learning_curves.png, the batch loss over training
  4. heatmap.png           log10 gradient norm, layer x step, for the deepest sigmoid and ReLU runs
  5. saturation.png        saturated units (sigmoid, tanh) and dead units (ReLU-like) per layer
  6. findings              a paragraph whose every number is computed from the runs

It works on a partial sweep and on a single run, and says what is missing, failed or diverged.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import itertools
import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure

from vgbench.figures import save_figure
from vgbench.files import write_atomic

CHANCE_ACCURACY_MARGIN = 0.1  # "near chance": test accuracy below 1/classes + this
SATURATING = ("sigmoid", "tanh", "hardtanh", "softmax", "binary_step")


@dataclass
class Run:
    name: str  # the run folder, relative to the sweep folder
    summary: dict[str, Any]
    overrides: list[str]
    layers: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return self.summary.get("config", {})

    @property
    def activation(self) -> str:
        return self.config.get("activation", {}).get("name", "?")

    @property
    def depth(self) -> int:
        return int(self.config.get("model", {}).get("depth", 0))

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    def ratio(self, which: str) -> float | None:
        value = (self.summary.get("first_to_last_grad_ratio") or {}).get(which)
        return float(value) if value is not None else None

    def final(self, key: str) -> float | None:
        value = (self.summary.get("final") or {}).get(key)
        return float(value) if value is not None else None

    def profile(self, which: str, metric: str) -> list[float]:
        return ((self.summary.get("profile") or {}).get(which) or {}).get("layers", {}).get(metric, [])


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str) -> Any:
    try:
        return float(text) if text != "" else None
    except ValueError:
        return text


def load_runs(folder: Path) -> list[Run]:
    """Every run under `folder` (or `folder` itself, for a single run) that has a summary.json."""
    runs = []
    for path in sorted(folder.rglob("summary.json")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # .submitit and other tool folders
        run_dir = path.parent
        overrides_file = run_dir / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        runs.append(Run(
            name=str(run_dir.relative_to(folder)) if run_dir != folder else ".",
            summary=json.loads(path.read_text()),
            overrides=overrides or [],
            layers=_read_csv(run_dir / "layers.csv"),
            steps=_read_csv(run_dir / "steps.csv"),
        ))  # fmt: skip
    return runs


def expected_overrides(folder: Path) -> list[frozenset[str]] | None:
    """The runs the sweep asked for, from Hydra's multirun.yaml: the cross product of comma lists."""
    path = folder / "multirun.yaml"
    if not path.exists():
        return None
    hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra", {})
    choices: dict[str, list[str]] = {}
    for key, value in ((hydra.get("sweeper") or {}).get("params") or {}).items():
        choices[key] = [v.strip() for v in str(value).split(",")]
    for override in (hydra.get("overrides") or {}).get("task", []):
        key, _, value = override.partition("=")
        if "," in value and not value.startswith(("[", "{")):
            choices[key] = [v.strip() for v in value.split(",")]
    if any("(" in v for values in choices.values() for v in values):
        return None  # range() or choice() sweeps: not enumerated here
    return [frozenset(f"{k}={v}" for k, v in zip(choices, combo, strict=True))
            for combo in itertools.product(*choices.values())]  # fmt: skip


def missing_runs(folder: Path, runs: list[Run]) -> list[str]:
    expected = expected_overrides(folder)
    if expected is None:
        return []
    have = [set(run.overrides) for run in runs]
    return [",".join(sorted(combo)) for combo in expected if not any(combo <= h for h in have)]


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return flat


def swept_keys(runs: list[Run]) -> list[str]:
    """Config keys whose values differ between runs (what the sweep varied)."""
    flats = [_flatten(run.config) for run in runs]
    keys = sorted({k for flat in flats for k in flat})
    ignore = ("data.root", "trainer.resume", "trainer.device", "trainer.cpu_threads")
    return [k for k in keys if k not in ignore and len({str(flat.get(k)) for flat in flats}) > 1]


def results_table(runs: list[Run]) -> tuple[list[str], list[list[Any]]]:
    swept = swept_keys(runs)
    columns = ["run", "activation", "depth", *[k for k in swept if k not in ("activation.name", "model.depth")],
               "status", "epochs_done", "test_acc", "test_loss", "train_loss", "ratio_step0", "ratio_final",
               "wall_time_s", "error"]  # fmt: skip
    rows = []
    for run in runs:
        flat = _flatten(run.config)
        row = {"run": run.name, "activation": run.activation, "depth": run.depth, "status": run.status,
               "epochs_done": run.summary.get("epochs_done"), "test_acc": run.final("test_acc"),
               "test_loss": run.final("test_loss"), "train_loss": run.final("train_loss"),
               "ratio_step0": run.ratio("step0"), "ratio_final": run.ratio("final"),
               "wall_time_s": run.summary.get("wall_time_s"), "error": run.summary.get("error", "")}  # fmt: skip
        rows.append([row[c] if c in row else flat.get(c) for c in columns])
    return columns, rows


# --- grouping: (activation, depth) -> runs, with means and spreads over seeds ---


def by_activation_depth(runs: list[Run]) -> dict[str, dict[int, list[Run]]]:
    groups: dict[str, dict[int, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.status != "failed":
            groups[run.activation][run.depth].append(run)
    return {a: dict(sorted(groups[a].items())) for a in sorted(groups, key=_activation_order)}


def _activation_order(name: str) -> tuple[int, str]:
    """The sweep's four first, in the order the course meets them; any others after, by name."""
    order = ("sigmoid", "tanh", "relu", "leaky_relu")
    return (order.index(name) if name in order else len(order), name)


def log_mean_spread(values: list[float]) -> tuple[float, float, float] | None:
    """Geometric mean, min and max of the positive finite values (ratios span orders of magnitude)."""
    good = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not good:
        return None
    return 10 ** statistics.fmean(math.log10(v) for v in good), min(good), max(good)


def mean_spread(values: list[float]) -> tuple[float, float] | None:
    good = [v for v in values if v is not None and math.isfinite(v)]
    if not good:
        return None
    return statistics.fmean(good), statistics.pstdev(good) if len(good) > 1 else 0.0


# --- figures ---


def headline_figure(groups: dict[str, dict[int, list[Run]]]) -> Figure:
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    for activation, depths in groups.items():
        points = [(d, log_mean_spread([r.ratio("step0") for r in rs])) for d, rs in depths.items()]
        points = [(d, s) for d, s in points if s is not None]
        if not points:
            continue
        xs = [d for d, _ in points]
        line = axes.plot(xs, [s[0] for _, s in points], "o-", label=activation)[0]
        axes.fill_between(xs, [s[1] for _, s in points], [s[2] for _, s in points], color=line.get_color(), alpha=0.2)
    axes.set_yscale("log")
    axes.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")
    axes.set_xticks(sorted({d for depths in groups.values() for d in depths}))
    axes.set_xlabel("hidden layers (depth)")
    axes.set_ylabel("||dL/dW_1|| / ||dL/dW_out|| at step 0")
    axes.set_title("How much gradient reaches the first layer")
    axes.legend()
    return figure


def profiles_figure(groups: dict[str, dict[int, list[Run]]]) -> Figure:
    activations = list(groups)
    figure = Figure(figsize=(3.2 * max(1, len(activations)), 5.6))
    for column, activation in enumerate(activations):
        for row, which in enumerate(("step0", "final")):
            axes = figure.add_subplot(2, len(activations), row * len(activations) + column + 1)
            for depth, runs in groups[activation].items():
                norms = runs[0].profile(which, "grad_norm/weight")
                if norms:
                    axes.plot(range(1, len(norms) + 1), [n if n > 0 else float("nan") for n in norms], ".-",
                              label=f"depth {depth}")  # fmt: skip
            axes.set_yscale("log")
            axes.set_title(f"{activation}, {'step 0' if which == 'step0' else 'end'}", fontsize=9)
            axes.set_xlabel("layer (1 = input side)", fontsize=8)
            if column == 0:
                axes.set_ylabel("||dL/dW_l||", fontsize=8)
            axes.tick_params(labelsize=7)
            if row == 0 and column == len(activations) - 1:
                axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def accuracy_figure(groups: dict[str, dict[int, list[Run]]], chance: float) -> Figure:
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    for activation, depths in groups.items():
        points = [(d, mean_spread([r.final("test_acc") for r in rs])) for d, rs in depths.items()]
        points = [(d, s) for d, s in points if s is not None]
        if points:
            axes.errorbar([d for d, _ in points], [s[0] for _, s in points], yerr=[s[1] for _, s in points],
                          fmt="o-", capsize=3, label=activation)  # fmt: skip
    axes.axhline(chance, color="gray", linestyle="--", linewidth=0.8, label="chance")
    axes.set_xticks(sorted({d for depths in groups.values() for d in depths}))
    axes.set_xlabel("hidden layers (depth)")
    axes.set_ylabel("test accuracy")
    axes.set_ylim(0, 1)
    axes.legend()
    return figure


def learning_curves_figure(groups: dict[str, dict[int, list[Run]]]) -> Figure:
    activations = list(groups)
    figure = Figure(figsize=(3.2 * max(1, len(activations)), 3.0))
    for column, activation in enumerate(activations):
        axes = figure.add_subplot(1, len(activations), column + 1)
        for depth, runs in groups[activation].items():
            points = [(s["step"], s.get("train/batch_loss")) for s in runs[0].steps if s.get("train/batch_loss")]
            if points:
                axes.plot([p[0] for p in points], [p[1] for p in points], label=f"depth {depth}", linewidth=1)
        axes.set_title(activation, fontsize=9)
        axes.set_xlabel("step", fontsize=8)
        if column == 0:
            axes.set_ylabel("training loss (batch)", fontsize=8)
        axes.tick_params(labelsize=7)
    if activations:
        figure.axes[-1].legend(fontsize=7)
    figure.tight_layout()
    return figure


def heatmap_runs(groups: dict[str, dict[int, list[Run]]]) -> list[Run]:
    """The deepest sigmoid and ReLU runs (or the deepest of whatever activations there are)."""
    picks = [a for a in ("sigmoid", "relu") if a in groups] or list(groups)[:2]
    return [groups[a][max(groups[a])][0] for a in picks if groups[a]]


def _log_grid(run: Run) -> tuple[list[int], list[list[float]]]:
    """(measured steps, log10 ||dL/dW|| as rows = layers from the input, columns = steps)."""
    steps = sorted({int(r["step"]) for r in run.layers})
    n_layers = len({int(r["layer"]) for r in run.layers})
    grid = [[float("nan")] * len(steps) for _ in range(n_layers)]
    step_index = {s: i for i, s in enumerate(steps)}
    for row in run.layers:
        value = row.get("grad_norm/weight")
        if isinstance(value, float) and value > 0:
            grid[int(row["layer"]) - 1][step_index[int(row["step"])]] = math.log10(value)
    return steps, grid


def heatmap_figure(runs: list[Run]) -> Figure:
    """One panel per run, on one colour scale so the panels compare."""
    figure = Figure(figsize=(5.2 * max(1, len(runs)), 3.8))
    grids = [_log_grid(run) for run in runs]
    values = [v for _, grid in grids for row in grid for v in row if math.isfinite(v)]
    scale = {"vmin": min(values), "vmax": max(values)} if values else {}
    for column, (run, (steps, grid)) in enumerate(zip(runs, grids, strict=True)):
        axes = figure.add_subplot(1, len(runs), column + 1)
        extent = (steps[0], steps[-1], 0.5, len(grid) + 0.5) if steps else None
        image = axes.imshow(grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest",
                            extent=extent, **scale)  # fmt: skip
        figure.colorbar(image, ax=axes, label="log10 ||dL/dW_l||")
        axes.set_title(f"{run.activation}, depth {run.depth}", fontsize=9)
        axes.set_xlabel("step")
        axes.set_ylabel("layer (1 = input side)")
    figure.tight_layout()
    return figure


def saturation_figure(groups: dict[str, dict[int, list[Run]]]) -> Figure:
    activations = list(groups)
    figure = Figure(figsize=(3.2 * max(1, len(activations)), 3.2))
    for column, activation in enumerate(activations):
        metric, label = (("activation/saturated", "saturated units") if activation in SATURATING
                         else ("activation/dead", "dead units"))  # fmt: skip
        axes = figure.add_subplot(1, len(activations), column + 1)
        for depth, runs in groups[activation].items():
            values = runs[0].profile("final", metric)
            if values:
                axes.plot(range(1, len(values) + 1), values, ".-", label=f"depth {depth}")
        axes.set_ylim(-0.02, 1.02)
        axes.set_title(f"{activation}: {label} (end)", fontsize=9)
        axes.set_xlabel("hidden layer", fontsize=8)
        axes.tick_params(labelsize=7)
    if activations:
        figure.axes[-1].legend(fontsize=7)
    figure.tight_layout()
    return figure


# --- findings: every number below comes from the runs ---


def findings(runs: list[Run], groups: dict[str, dict[int, list[Run]]], chance: float, missing: list[str]) -> list[str]:
    lines = []
    for activation, depths in groups.items():
        parts, orders = [], []
        for depth, group in depths.items():
            stats = log_mean_spread([r.ratio("step0") for r in group])
            if stats is not None:
                orders.append(-math.log10(stats[0]))
                spread = "" if len(group) < 2 else f" (runs {stats[1]:.1e} to {stats[2]:.1e})"
                parts.append(f"{stats[0]:.1e} at depth {depth}{spread}")
        if not parts:
            continue
        largest = max(abs(o) for o in orders)
        if largest < 1:
            verdict = f"the first layer's gradient stays within {largest:.1f} orders of magnitude of the last's"
        else:
            verdict = (f"the first layer's gradient trails the output layer's by {min(orders):.1f} to "
                       f"{max(orders):.1f} orders of magnitude")  # fmt: skip
        lines.append(f"**{activation}**: first-to-last gradient ratio at step 0 is {', '.join(parts)}: {verdict}.")
    near_chance, learned = [], []
    for activation, depths in groups.items():
        for depth, group in depths.items():
            stats = mean_spread([r.final("test_acc") for r in group])
            if stats is None:
                continue
            spread = f" ± {stats[1]:.3f}" if len(group) > 1 else ""
            text = f"{activation} at depth {depth} ({stats[0]:.3f}{spread})"
            (near_chance if stats[0] < chance + CHANCE_ACCURACY_MARGIN else learned).append(text)
    if near_chance:
        lines.append(f"Near chance ({chance:.2f}) after training: " + "; ".join(near_chance) + ".")
    if learned:
        lines.append("Learned: " + "; ".join(learned) + ".")
    seeds = {len(g) for depths in groups.values() for g in depths.values()}
    if max(seeds, default=1) > 1:
        lines.append(f"Values are means over {min(seeds)} to {max(seeds)} seeds (ratios: geometric means).")
    diverged = [r.name for r in runs if r.status == "diverged"]
    failed = [f"{r.name} ({r.summary.get('error', 'no error recorded')})" for r in runs if r.status == "failed"]
    lines.append(f"Diverged: {', '.join(diverged)}." if diverged else "No run diverged.")
    lines.append(f"Failed: {'; '.join(failed)}." if failed else "No run failed.")
    if missing:
        lines.append(f"Missing ({len(missing)} of the sweep's runs have no summary yet): " + "; ".join(missing) + ".")
    return lines


# --- output ---


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3e}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4) else f"{value:.4g}"
    return "" if value is None else str(value)


@dataclass
class Report:
    files: dict[str, Path]  # results.csv, the figures, report.md, report.html
    findings: list[str]


def write_report(folder: Path) -> Report:
    """Write results.csv, the figures, report.md and report.html into `folder`."""
    runs = load_runs(folder)
    if not runs:
        raise FileNotFoundError(f"no summary.json under {folder}: is it a run or sweep folder of vgbench?")
    missing = missing_runs(folder, runs)
    groups = by_activation_depth(runs)
    num_classes = 10
    chance = 1 / num_classes
    columns, rows = results_table(runs)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    outputs = {"results.csv": folder / "results.csv"}
    write_atomic(outputs["results.csv"], buffer.getvalue().encode())

    figures = {
        "headline.png": ("How much gradient reaches the first layer, at initialisation", headline_figure(groups)),
        "profiles.png": ("Gradient norm per layer, at step 0 and at the end", profiles_figure(groups)),
        "accuracy.png": ("Test accuracy against depth", accuracy_figure(groups, chance)),
        "learning_curves.png": ("Learning curves", learning_curves_figure(groups)),
        "heatmap.png": ("Gradient norm, layer x training step", heatmap_figure(heatmap_runs(groups))),
        "saturation.png": ("Saturated and dead units per layer, at the end", saturation_figure(groups)),
    }
    for name, (_, figure) in figures.items():
        outputs[name] = folder / name
        save_figure(figure, outputs[name])

    statuses = defaultdict(int)
    for run in runs:
        statuses[run.status] += 1
    overview = (f"{len(runs)} run(s) in `{folder}`: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
                + (f"; {len(missing)} of the sweep's runs missing." if missing else "."))  # fmt: skip
    finding_lines = findings(runs, groups, chance, missing)
    outputs["report.md"] = folder / "report.md"
    write_atomic(outputs["report.md"], _markdown(overview, finding_lines, figures, columns, rows).encode())
    outputs["report.html"] = folder / "report.html"
    write_atomic(outputs["report.html"], _html(overview, finding_lines, figures, columns, rows, folder).encode())
    return Report(outputs, finding_lines)


def _markdown(overview: str, lines: list[str], figures: dict, columns: list[str], rows: list[list[Any]]) -> str:
    text = ["# Vanishing-gradient report", "", overview, "", "## Findings", ""]
    text += [f"- {line}" for line in lines]
    for name, (title, _) in figures.items():
        text += ["", f"## {title}", "", f"![{title}]({name})"]
    text += ["", "## Runs", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    text += ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(text) + "\n"


def _html(overview: str, lines: list[str], figures: dict, columns: list[str], rows: list[list[Any]],
          folder: Path) -> str:  # fmt: skip
    import html

    def inline(text: str) -> str:  # **bold** and `code`, the only markdown the findings use
        escaped = html.escape(text)
        for marker, tag in (("**", "b"), ("`", "code")):
            parts = escaped.split(marker)
            escaped = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(parts))
        return escaped

    body = [f"<h1>Vanishing-gradient report</h1><p>{inline(overview)}</p><h2>Findings</h2><ul>"]
    body += [f"<li>{inline(line)}</li>" for line in lines] + ["</ul>"]
    for name, (title, _) in figures.items():
        data = base64.b64encode((folder / name).read_bytes()).decode()
        body.append(f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">')
    body.append("<h2>Runs</h2><table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>")
    body += ["<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows]
    body.append("</table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
             "img{max-width:100%}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}code{background:#f3f3f3}")  # fmt: skip
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>vgbench report</title><style>{style}</style>"
        f"</head><body>{''.join(body)}</body></html>\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vgbench-report", description="Write the report of a sweep (or a run).")
    parser.add_argument("folder", type=Path, help="a sweep folder (outputs/sweeps/...) or a single run's folder")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        sys.exit(f"error: {args.folder} is not a folder")
    try:
        report = write_report(args.folder)
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    print_report(report, args.folder)


def print_report(report: Report, folder: Path) -> None:
    """The findings in the terminal, then where the report is."""
    print("findings:", *[f"- {line.replace('**', '').replace('`', '')}" for line in report.findings], sep="\n")
    figures = [name for name in report.files if name.endswith(".png")]
    print(f"report: {report.files['report.html']} (and report.md, results.csv, {len(figures)} figures)")
    print(f"browse every run: tensorboard --logdir {folder}")


if __name__ == "__main__":
    main()
