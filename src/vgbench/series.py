"""The monitor's measurements of one run as plain tables: `layers.csv` and `steps.csv`.

layers.csv  one row per (measured step, layer): step, epoch, layer, kind (hidden/output), then every
            per-layer metric (hidden-only metrics are empty for the output layer)
steps.csv   one row per measured step: step, epoch, total_grad_norm, first_to_last_grad_ratio,
            first_to_last_delta_ratio and what the loop sent along (the batch loss)
The report reads these, never TensorBoard's event files.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from vgbench.files import write_atomic
from vgbench.monitor import HIDDEN_METRICS, LAYER_METRICS, Measurement
from vgbench.summary import Profile

LAYER_COLUMNS = ["step", "epoch", "layer", "kind", *LAYER_METRICS, *HIDDEN_METRICS]


def layer_rows(measurement: Measurement, epoch: int) -> list[dict[str, Any]]:
    n_layers = len(measurement.layers[LAYER_METRICS[0]])
    rows = []
    for index in range(n_layers):
        hidden = index < n_layers - 1
        row: dict[str, Any] = {"step": measurement.step, "epoch": epoch, "layer": index + 1,
                               "kind": "hidden" if hidden else "output"}  # fmt: skip
        row |= {name: measurement.layers[name][index] for name in LAYER_METRICS}
        row |= {name: measurement.layers[name][index] if hidden else None for name in HIDDEN_METRICS}
        rows.append(row)
    return rows


def step_row(measurement: Measurement, epoch: int) -> dict[str, Any]:
    return {"step": measurement.step, "epoch": epoch, "total_grad_norm": measurement.total_grad_norm,
            "first_to_last_grad_ratio": measurement.first_to_last_grad_ratio,
            "first_to_last_delta_ratio": measurement.first_to_last_delta_ratio, **measurement.extra}  # fmt: skip


def profile(measurement: Measurement) -> Profile:
    """A measurement as the summary stores it: the step, the run-level numbers, per-layer lists."""
    return Profile(step=measurement.step, first_to_last_grad_ratio=measurement.first_to_last_grad_ratio,
                   first_to_last_delta_ratio=measurement.first_to_last_delta_ratio,
                   total_grad_norm=measurement.total_grad_norm, layers=measurement.layers)  # fmt: skip


class Series:
    """All measurements of a run, kept as rows; saved with the checkpoint so a resume continues them."""

    def __init__(self, layers: list[dict[str, Any]] | None = None, steps: list[dict[str, Any]] | None = None) -> None:
        self.layers = layers or []
        self.steps = steps or []

    def add(self, measurement: Measurement, epoch: int) -> None:
        self.layers.extend(layer_rows(measurement, epoch))
        self.steps.append(step_row(measurement, epoch))

    def state(self) -> dict[str, list[dict[str, Any]]]:
        return {"layers": self.layers, "steps": self.steps}

    def write(self, run_dir: Path) -> None:
        write_atomic(run_dir / "layers.csv", _csv(self.layers, LAYER_COLUMNS))
        step_columns = list(dict.fromkeys(key for row in self.steps for key in row))
        write_atomic(run_dir / "steps.csv", _csv(self.steps, step_columns))


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()
