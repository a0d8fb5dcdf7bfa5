"""The report as files: results.csv (one row per run), report.md, and report.html with the figures inside."""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import Any

from vgbench.report.load import Sweep


def results_table(sweep: Sweep) -> tuple[list[str], list[list[Any]]]:
    columns = [
        "run",
        *sweep.swept,
        "status",
        "epochs_done",
        "test_acc",
        "test_loss",
        "train_loss",
        "ratio_step0",
        "delta_ratio_step0",
        "ratio_final",
        "flow",
        *(f"steps_to {target}" for target in sweep.targets),  # empty: never met
        "wall_time_s",
        "stack_size",
        "error",
    ]
    rows = []
    for run in sweep.runs:
        flow = run.flow
        values = {
            "run": run.name,
            "status": run.status,
            "epochs_done": run.summary.get("epochs_done"),
            "test_acc": run.final("test_acc"),
            "test_loss": run.final("test_loss"),
            "train_loss": run.final("train_loss"),
            "ratio_step0": run.ratio("step0"),
            "delta_ratio_step0": run.ratio("step0", "delta"),
            "ratio_final": run.ratio("final"),
            "flow": flow["kind"] if flow else None,
            **{f"steps_to {target}": run.steps_to(target) for target in sweep.targets},
            "wall_time_s": run.summary.get("wall_time_s"),
            "stack_size": run.summary.get("stack_size"),
            "error": run.summary.get("error", ""),
        }
        rows.append([values[c] if c in values else run.setting(c) for c in columns])
    return columns, rows


def csv_bytes(columns: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buffer.getvalue().encode()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3e}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4) else f"{value:.4g}"
    return "" if value is None else str(value)


def _markdown_cell(value: Any) -> str:
    """A table cell of report.md: HTML escaped (markdown passes raw HTML through, and a swept value is the
    user's text), and | escaped (it would end the cell)."""
    return html.escape(_cell(value), quote=False).replace("|", "\\|")


def _markdown_table(heading: str, columns: list[str], rows: list[list[Any]], level: str = "##") -> list[str]:
    text = ["", f"{level} {heading}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return text + ["| " + " | ".join(_markdown_cell(v) for v in row) + " |" for row in rows]


def markdown(
    title: str,
    overview: list[str],
    findings: list[str],
    sections: list[tuple[str, str, str]],
    tables: list[tuple[str, list[str], list[list[Any]]]],
    grids: list[tuple[str, list[str], list[list[Any]]]],
) -> str:
    """sections: (title, figure file, caption); tables and grids: (title, columns, rows). The grids (the
    headline numbers) open the report, before the findings; the other tables close it."""
    text = [f"# {html.escape(title, quote=False)}", "", *(html.escape(line, quote=False) for line in overview)]
    for heading, columns, rows in grids:
        text += _markdown_table(heading, columns, rows, "###")
    text += ["", "## Findings", ""]
    text += [f"- {html.escape(line, quote=False)}" for line in findings]
    for heading, name, caption in sections:
        text += (
            ["", f"## {heading}", "", caption, "", f"![{heading}]({name})"]
            if caption
            else ["", f"## {heading}", "", f"![{heading}]({name})"]
        )
    for heading, columns, rows in tables:
        text += _markdown_table(heading, columns, rows)
    return "\n".join(text) + "\n"


def _html_table(heading: str, columns: list[str], rows: list[list[Any]], level: str = "h2") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<{level}>{html.escape(heading)}</{level}><table><tr>{head}</tr>{body}</table>"


def _inline(text: str) -> str:  # **bold** and `code`, the only markdown the findings use
    escaped = html.escape(text)
    for marker, tag in (("**", "b"), ("`", "code")):
        parts = escaped.split(marker)
        escaped = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(parts))
    return escaped


def html_page(
    title: str,
    overview: list[str],
    findings: list[str],
    sections: list[tuple[str, str, str]],
    tables: list[tuple[str, list[str], list[list[Any]]]],
    folder: Path,
    grids: list[tuple[str, list[str], list[list[Any]]]],
) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"] + [f"<p>{_inline(line)}</p>" for line in overview]
    body += [_html_table(heading, columns, rows, "h3") for heading, columns, rows in grids]
    body += ["<h2>Findings</h2><ul>"] + [f"<li>{_inline(line)}</li>" for line in findings] + ["</ul>"]
    for heading, name, caption in sections:
        data = base64.b64encode((folder / name).read_bytes()).decode()
        body.append(
            f"<h2>{html.escape(heading)}</h2>"
            + (f"<p>{_inline(caption)}</p>" if caption else "")
            + f'<img alt="{html.escape(heading)}" src="data:image/png;base64,{data}">'
        )
    body += [_html_table(heading, columns, rows) for heading, columns, rows in tables]
    style = (
        "body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;line-height:1.45}"
        "img{max-width:100%}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}code{background:#f3f3f3}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
