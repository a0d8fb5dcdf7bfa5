"""The report's headline numbers as grids: one swept key across (the figures' x axis), the rest down.
The step-0 ratio, test accuracy, steps to each of the runs' targets (vgbench.targets), the flow verdict.

For each headline metric a table whose rows are the lines of the figures (a combination of the other
swept keys) and whose columns are the x values; each cell is the group's value over its seeds, with its
range. The same tables go into report.md and report.html (first, before the findings), tables.csv, and
with `vgbench-report --format latex` into tables.tex (booktabs) for a paper.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable

from vgbench.report.load import Group, Sweep, log_mean_spread, mean_spread

Table = tuple[str, list[str], list[list[str]]]  # (title, columns, rows of cells)


def _ratio(group: Group) -> str:
    stats = log_mean_spread([r.ratio("step0") for r in group.runs])
    if stats is None:
        return ""
    return f"{stats[0]:.2g}" + (f" ({stats[1]:.2g} to {stats[2]:.2g})" if len(group.runs) > 1 else "")


def _accuracy(group: Group) -> str:
    stats = mean_spread([r.final("test_acc") for r in group.runs])
    if stats is None:
        return ""
    return f"{stats[0]:.3f}" + (f" ± {stats[1]:.3f}" if len(group.runs) > 1 else "")


def _flow(group: Group) -> str:
    kinds = Counter(r.flow["kind"] for r in group.runs if r.flow)
    if not kinds:
        return ""
    kind, count = kinds.most_common(1)[0]
    return kind if count == sum(kinds.values()) else f"{kind} ({count}/{sum(kinds.values())})"


def steps_to_target(target: str) -> Callable[[Group], str]:
    """A cell: the mean step at which the group's seeds first met `target`, their range, and how many never
    did ('never' where none did). Runs that did not record the target are left out."""

    def cell(group: Group) -> str:
        steps, recorded = group.steps_to(target)
        if not steps:
            return "never" if recorded else ""
        text = f"{sum(steps) / len(steps):.0f}"
        never = recorded - len(steps)
        notes = [f"{min(steps)} to {max(steps)}"] if min(steps) < max(steps) else []
        notes += [f"{never} of {recorded} never"] if never else []
        return text + (f" ({'; '.join(notes)})" if notes else "")

    return cell


METRICS: list[tuple[str, Callable[[Group], str]]] = [
    ("First-to-last gradient ratio at step 0 (geometric mean over seeds, their range)", _ratio),
    ("Test accuracy (mean ± std over seeds)", _accuracy),
    ("Flow at step 0 (the seeds' majority)", _flow),
]


def grid(sweep: Sweep, title: str, cell: Callable[[Group], str]) -> Table | None:
    """One metric over the sweep: a row per line, a column per x value. None when no group has the metric."""
    xs = sweep.x_values()
    head = ", ".join(k.split(".")[-1] for k in sweep.line_keys) or "runs"
    columns = [head, *(f"{sweep.x_key.split('.')[-1]}={x}" if sweep.x_key else "value" for x in xs)]
    rows = []
    for settings, groups in sweep.lines():
        by_x = {group.settings.get(sweep.x_key) if sweep.x_key else None: cell(group) for group in groups}
        rows.append([sweep.line_label(settings) if settings else "all runs", *(by_x.get(x, "") for x in xs)])
    if not any(any(row[1:]) for row in rows):
        return None
    return title, columns, rows


def grids(sweep: Sweep) -> list[Table]:
    """The headline tables: the step-0 ratio, accuracy, steps to each target, the flow."""
    steps = [
        (f"Steps to {target} (mean over the seeds that met it, their range; never: not met)", steps_to_target(target))
        for target in sweep.targets
    ]
    metrics = [*METRICS[:2], *steps, *METRICS[2:]]
    return [table for title, cell in metrics if (table := grid(sweep, title, cell))]


def tables_csv(tables: list[Table]) -> bytes:
    """Every grid in one CSV file: its title on a row of its own, then its header and rows, then a blank row."""
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for title, columns, rows in tables:
        writer.writerows([[title], columns, *rows, []])
    return buffer.getvalue().encode()


def _latex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$")


def tables_latex(tables: list[Table]) -> str:
    """Every grid as a LaTeX table (booktabs: \\usepackage{booktabs})."""
    out = []
    for title, columns, rows in tables:
        out += [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{_latex(title)}}}",
            rf"\begin{{tabular}}{{l{'r' * (len(columns) - 1)}}}",
            r"\toprule",
            " & ".join(_latex(c) for c in columns) + r" \\",
            r"\midrule",
            *(" & ".join(_latex(c) for c in row) + r" \\" for row in rows),
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    return "\n".join(out)
