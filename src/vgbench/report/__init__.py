"""The sweep report: `vgbench-report <folder>` (and the sweep callback at the end of a multirun) reads every
run's summary.json and CSV series (never TensorBoard's files) and writes into the folder results.csv,
report.md, report.html (self-contained) and the figures as PNG files.

It understands any sweep: what the runs' overrides varied makes the groups (only seeds are averaged), a
numeric swept key is the figures' x axis, the other keys make the lines (vgbench.report.load). It works on a
partial sweep, a merged folder and a single run, and says what is missing, failed or diverged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from vgbench.errors import CommandParser, exit_with_error
from vgbench.figures import save_figure
from vgbench.files import write_atomic
from vgbench.report import figures as draw
from vgbench.report.aggregate import AGGREGATE_DIR, write_aggregates
from vgbench.report.findings import findings as compute_findings
from vgbench.report.load import Sweep, log_mean_spread, missing_runs, read_sweep, variance_interval
from vgbench.report.render import csv_bytes, html_page, markdown, results_table
from vgbench.report.tables import Table, grids, tables_csv, tables_latex


@dataclass
class Report:
    sweep: Sweep
    files: dict[str, Path]  # results.csv, the figures, report.md, report.html
    figures: dict[str, tuple[str, Figure]]  # file name -> (title, figure)
    findings: list[str]
    aggregates: list[Path]  # the TensorBoard run of each group of seeds (vgbench.report.aggregate)
    grids: list[Table]  # the headline tables (vgbench.report.tables)


def overview(sweep: Sweep, missing: list[str]) -> list[str]:
    statuses: dict[str, int] = {}
    for run in sweep.runs:
        statuses[run.status] = statuses.get(run.status, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    lines = [
        f"{len(sweep.runs)} run(s) in `{sweep.folder}`: {counts}"
        + (f"; {len(missing)} of the sweep's runs missing." if missing else ".")
    ]
    if sweep.swept:
        lines.append(
            "Swept: "
            + ", ".join(f"`{k}`" for k in sweep.swept)
            + f"; {len(sweep.groups)} group(s)"
            + (f" of {len(sweep.seeds)} seeds" if sweep.seeds else "")
            + "."
        )
    if sweep.fixed:
        lines.append("The same for every run: " + ", ".join(f"`{k}={v}`" for k, v in sweep.fixed.items()) + ".")
    return lines


def build_figures(sweep: Sweep, chance: float) -> dict[str, tuple[str, Figure, str]]:
    """name -> (title, figure, caption), for this sweep's shape."""
    x = f"`{sweep.x_key}`" if sweep.x_key else "the runs"
    return {
        "headline.png": (
            "How much gradient reaches the first layer, at initialisation",
            draw.ratio_figure(sweep),
            f"Geometric mean over seeds (band: min to max) against {x}; dotted: the flow thresholds.",
        ),
        "accuracy.png": ("Test accuracy", draw.accuracy_figure(sweep, chance), f"Mean ± std over seeds against {x}."),
        "steps_to_target.png": (
            "Steps to target",
            draw.steps_to_target_figure(sweep),
            "Mean over the seeds that met each target (band: min to max), at the resolution of its checks "
            "(trainer.log_every_n_steps for train_*, evaluations for val_*); crosses: runs that never met it.",
        ),
        "final_loss.png": (
            "Final training loss: crawled, learned, diverged",
            draw.final_loss_figure(sweep),
            "Each run; diverged runs drawn above the scale.",
        ),
        "learning_curves.png": ("Learning curves", draw.learning_curves_figure(sweep), "The first seed of each."),
        "profiles.png": ("Gradient norm per layer at step 0", draw.profiles_figure(sweep, "step0"), ""),
        "deltas.png": (
            "Back-propagated error per layer at step 0: measured and predicted",
            draw.profiles_figure(sweep, "step0", "delta_norm", "delta_l (per example)", draw.predicted_deltas),
            "Solid: measured; dashed: the mean-field prediction (vgbench.theory), anchored at the "
            "measured output layer.",
        ),
        "profiles_end.png": ("Gradient norm per layer at the end", draw.profiles_figure(sweep, "final"), ""),
        "heatmap.png": (
            "Gradient norm, layer x training step",
            draw.heatmap_figure(sweep),
            "The groups with the smallest and the largest step-0 ratio.",
        ),
        "saturation.png": ("Saturated and dead units per layer, at the end", draw.units_figure(sweep), ""),
        "criticality.png": (
            "Where deep networks train: accuracy over (sigma_w^2, depth)",
            draw.criticality_figure(sweep, chance),
            "Mean test accuracy; dashed: depth = 6 xi_c, below which the theory says they train.",
        ),
        "finite_width.png": (
            "The spread across seeds at finite width",
            draw.finite_width_figure(sweep),
            "Dots: the variance of ln(delta_1/delta_out) over each group's seeds, with its 95% sampling interval; "
            "crosses: the predicted variance (vgbench.theory, Hanin 2018).",
        ),
        "spectra.png": (
            "Dynamical isometry: the Jacobian's singular values at step 0",
            draw.spectra_figure(sweep),
            "Cumulative distribution of the singular values of dh_L/dh_1 (monitor.jacobian).",
        ),
    }


def theory_table(sweep: Sweep) -> tuple[str, list[str], list[list[Any]]] | None:
    """Per group: the mean-field prediction beside the measurement (geometric mean over seeds): the
    first-to-last ratio, the growth of |delta|^2 per layer, and the spread of ln(delta_1 / delta_out) across
    seeds, its measured variance with the 95% sampling interval."""
    columns = [
        "group",
        "predicted delta ratio",
        "measured",
        "measured / predicted",
        "growth/layer predicted",
        "measured",
        "chi_1",
        "xi_c",
        "regime",
        "var ln ratio predicted",
        "measured",
        "95% interval",
        "Jacobian: mean s^2",
        "var s^2",
        "var / mean^2",
        "max s",
    ]
    rows = []
    for group in sweep.groups:
        theory = group.runs[0].summary.get("theory") or {}
        results = [r.summary.get("theory") or {} for r in group.runs]
        measured = log_mean_spread([t.get("measured_delta_ratio") for t in results])
        growth = log_mean_spread([t.get("measured_growth_per_layer") for t in results])
        spectrum = group.runs[0].summary.get("jacobian") or {}
        if not theory.get("applies") and not spectrum:
            continue
        predicted = theory.get("delta_ratio")
        spread = theory.get("log_ratio_std")
        logs = [math.log(t["measured_delta_ratio"]) for t in results if (t.get("measured_delta_ratio") or 0) > 0]
        variance = variance_interval(logs) if spread is not None else None
        rows.append(
            [
                group.label(),
                predicted,
                measured[0] if measured else None,
                measured[0] / predicted if measured and predicted else None,
                theory.get("growth_per_layer"),
                growth[0] if growth else None,
                theory.get("chi_1"),
                theory.get("xi_c"),
                theory.get("regime"),
                spread**2 if spread is not None else None,
                variance[0] if variance else None,
                f"{variance[1]:.3g} to {variance[2]:.3g}" if variance else None,
                spectrum.get("mean_sq_singular"),
                spectrum.get("var_sq_singular"),
                spectrum.get("relative_spread"),
                spectrum.get("max_singular"),
            ]
        )
    if not rows:
        return None
    kept = [i for i in range(len(columns)) if i == 0 or any(row[i] is not None for row in rows)]  # drop empty ones
    return (
        "Mean-field prediction and measurement at step 0",
        [columns[i] for i in kept],
        [[row[i] for i in kept] for row in rows],
    )


def write_report(folder: Path, latex: bool = False) -> Report:
    """Write results.csv, the headline tables (tables.csv, and tables.tex with `latex`), the figures,
    report.md and report.html into `folder`, and the TensorBoard run of each group of seeds into its
    `_mean/`."""
    sweep = read_sweep(folder)
    missing = missing_runs(folder, sweep.runs)
    classes = {  # chance accuracy from the runs' own class counts (a failed run's config may hold any value)
        count
        for run in sweep.runs
        if isinstance(data := run.config.get("data"), dict)
        and data.get("name") == "synthetic"
        and isinstance(count := data.get("num_classes"), int)
        and count > 1
    } or {10}
    chance = 1 / max(classes)
    columns, rows = results_table(sweep)
    outputs = {"results.csv": folder / "results.csv"}
    write_atomic(outputs["results.csv"], csv_bytes(columns, rows))
    figures = {name: spec for name, spec in build_figures(sweep, chance).items() if spec[1] is not None}
    for name, (_, figure, _) in figures.items():
        outputs[name] = folder / name
        save_figure(figure, outputs[name])
    lines = compute_findings(sweep, chance, missing)
    head = overview(sweep, missing)
    sections = [(title, name, caption) for name, (title, _, caption) in figures.items()]
    tables = [table for table in (theory_table(sweep), ("Runs", columns, rows)) if table]
    title = "Gradient-flow report"
    outputs["report.md"] = folder / "report.md"
    headline = grids(sweep)
    outputs["tables.csv"] = folder / "tables.csv"
    write_atomic(outputs["tables.csv"], tables_csv(headline))
    if latex:
        outputs["tables.tex"] = folder / "tables.tex"
        write_atomic(outputs["tables.tex"], tables_latex(headline).encode())
    write_atomic(outputs["report.md"], markdown(title, head, lines, sections, tables, headline).encode())
    outputs["report.html"] = folder / "report.html"
    write_atomic(outputs["report.html"], html_page(title, head, lines, sections, tables, folder, headline).encode())
    aggregates = write_aggregates(sweep, folder)
    figures_by_name = {name: (t, f) for name, (t, f, _) in figures.items()}
    return Report(sweep, outputs, figures_by_name, lines, aggregates, headline)


def print_report(report: Report, folder: Path) -> None:
    """The findings in the terminal, then where the report is."""
    print("findings:", *[f"- {line.replace('**', '').replace('`', '')}" for line in report.findings], sep="\n")
    count = sum(name.endswith(".png") for name in report.files)
    tex = ", tables.tex" if "tables.tex" in report.files else ""
    print(f"report: {report.files['report.html']} (and report.md, results.csv, tables.csv{tex}, {count} figures)")
    groups = (
        f" ({len(report.aggregates)} seed groups as mean-and-band runs under {AGGREGATE_DIR}/)"
        if report.aggregates
        else ""
    )
    print(f"browse every run: tensorboard --logdir {folder}{groups}")


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(prog="vgbench-report", description="Write the report of a sweep (or a run).")
    parser.add_argument("folder", type=Path, help="a sweep folder (outputs/sweeps/...) or a single run's folder")
    parser.add_argument(
        "--format",
        choices=["latex"],
        action="append",
        default=[],
        help="also write the headline tables as tables.tex (LaTeX, booktabs)",
    )
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        exit_with_error(f"{args.folder} is not a folder")
    try:
        report = write_report(args.folder, latex="latex" in args.format)
    except (FileNotFoundError, ValueError) as error:
        exit_with_error(error)
    print_report(report, args.folder)


if __name__ == "__main__":
    main()
