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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vgbench.files import write_atomic
from vgbench.monitor import HIDDEN_METRICS, LAYER_METRICS, Measurement
from vgbench.summary import Profile

LAYER_COLUMNS = ("step", "epoch", "layer", "kind", *LAYER_METRICS, *HIDDEN_METRICS)
# a watched model's (vgbench.watch): its modules' names beside their numbers
WATCH_LAYER_COLUMNS = ("step", "layer", "name", "kind", *LAYER_METRICS, *HIDDEN_METRICS)


def layer_rows(
    measurement: Measurement, epoch: int | None, names: list[str] | None = None, activations: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per layer and measured step. vgbench's MLP: layer l's row holds the activation after it
    (hidden) or none (the output layer). A watched model (`names`: its layers' module names; `activations`:
    its activation modules'): a row per layer (kind `layer`), then one per activation (kind `activation`,
    numbered in forward order), since its activations need not follow its layers one to one."""
    if names is not None:
        return watched_rows(measurement, names, activations or [])
    n_layers = len(measurement.layers[LAYER_METRICS[0]])
    rows = []
    for index in range(n_layers):
        hidden = index < n_layers - 1
        row: dict[str, Any] = {
            "step": measurement.step,
            "epoch": epoch,
            "layer": index + 1,
            "kind": "hidden" if hidden else "output",
        }
        row |= {name: measurement.layers[name][index] for name in LAYER_METRICS}
        row |= {name: measurement.layers[name][index] if hidden else None for name in HIDDEN_METRICS}
        rows.append(row)
    return rows


def watched_rows(measurement: Measurement, names: list[str], activations: list[str]) -> list[dict[str, Any]]:
    values = measurement.layers
    rows = [
        {"step": measurement.step, "layer": index + 1, "name": name, "kind": "layer"}
        | {metric: values[metric][index] for metric in LAYER_METRICS}
        for index, name in enumerate(names)
    ]
    rows += [
        {"step": measurement.step, "layer": index + 1, "name": name, "kind": "activation"}
        | {metric: values[metric][index] for metric in HIDDEN_METRICS}
        for index, name in enumerate(activations)
    ]
    return rows


def step_row(measurement: Measurement, epoch: int | None) -> dict[str, Any]:
    return {
        "step": measurement.step,
        "epoch": epoch,
        "total_grad_norm": measurement.total_grad_norm,
        "first_to_last_grad_ratio": measurement.first_to_last_grad_ratio,
        "first_to_last_delta_ratio": measurement.first_to_last_delta_ratio,
        **measurement.extra,
    }


def profile(measurement: Measurement) -> Profile:
    """A measurement as the summary stores it: the step, the run-level numbers, per-layer lists."""
    return Profile(
        step=measurement.step,
        first_to_last_grad_ratio=measurement.first_to_last_grad_ratio,
        first_to_last_delta_ratio=measurement.first_to_last_delta_ratio,
        total_grad_norm=measurement.total_grad_norm,
        layers=measurement.layers,
    )


class CsvTable:
    """A table that only grows, held as its CSV text: each row is formatted once, when it is added. Each
    epoch's end writes a run's tables whole (atomically) and its checkpoint keeps them: kept as rows, they
    would be formatted and pickled again from the first row each time, which for a large stack on a GPU
    costs more than the epoch's training. Its columns are `columns`, then the rows' other keys as first seen."""

    def __init__(self, text: str = "", columns: Sequence[str] = ()) -> None:
        self.columns: list[str] = next(csv.reader([text.split("\n", 1)[0]])) if text else []
        self.chunks = [text] if text else []  # joined when read: a long run adds thousands of rows
        self.buffer = io.StringIO()
        # rows go in as lists: DictWriter checks each row's keys with a Python call, and `add` knows the columns
        self.writer = csv.writer(self.buffer, lineterminator="\n")
        self.add([], columns)

    @property
    def text(self) -> str:
        if len(self.chunks) > 1:
            self.chunks = ["".join(self.chunks)]
        return self.chunks[0] if self.chunks else ""

    def add(self, rows: list[dict[str, Any]], columns: Sequence[str] = ()) -> None:
        keys = dict.fromkeys([*columns, *(key for row in rows for key in row)])
        new_columns = [key for key in keys if key not in self.columns]
        if not rows and not new_columns:
            return
        if new_columns:  # the first rows, or a key the loop sent along anew: every row again, under a new header
            rows = [*csv.DictReader(io.StringIO(self.text)), *rows]
            self.columns, self.chunks = self.columns + new_columns, []
            if self.columns:
                self.writer.writerow(self.columns)
        self.writer.writerows([[row.get(column) for column in self.columns] for row in rows])  # None: empty
        self.chunks.append(self.buffer.getvalue())
        self.buffer.seek(0)
        self.buffer.truncate()


class Series:
    """All measurements of a run as its two tables; their text goes into the checkpoint, so a resume
    continues them."""

    def __init__(self, layers: str = "", steps: str = "", layer_columns: Sequence[str] = LAYER_COLUMNS) -> None:
        self.layers = CsvTable(layers, layer_columns)
        self.steps = CsvTable(steps)
        # the folder whose files hold every row added so far: a run's end need not write them again
        self.written_to: Path | None = None

    def add(
        self,
        measurement: Measurement,
        epoch: int | None,
        names: list[str] | None = None,
        activations: list[str] | None = None,
    ) -> None:
        self.written_to = None
        self.layers.add(layer_rows(measurement, epoch, names, activations))
        row = step_row(measurement, epoch)
        self.steps.add([row if epoch is not None else {k: v for k, v in row.items() if k != "epoch"}])

    def state(self) -> dict[str, str]:
        return {"layers": self.layers.text, "steps": self.steps.text}

    def write(self, run_dir: Path) -> None:
        """Both tables into `run_dir`, unless they hold nothing new since this series last wrote them there."""
        if self.written_to == run_dir:
            return
        write_atomic(run_dir / "layers.csv", self.layers.text.encode())
        write_atomic(run_dir / "steps.csv", self.steps.text.encode())
        self.written_to = run_dir
