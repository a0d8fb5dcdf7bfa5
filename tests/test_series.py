"""A run's measurements as tables (vgbench.series): layers.csv and steps.csv, kept as CSV text."""

import csv
import io

from vgbench.monitor import HIDDEN_METRICS, LAYER_METRICS, Measurement
from vgbench.series import LAYER_COLUMNS, CsvTable, Series, layer_rows, profile, step_row


def measurement(step: int = 5, layers: int = 3) -> Measurement:
    """A measurement of a network with `layers - 1` hidden layers, each value naming its metric and layer."""
    values = {
        name: [10.0 * index + layer for layer in range(1, layers + 1)] for index, name in enumerate(LAYER_METRICS)
    }
    values |= {
        name: [100.0 + 10.0 * index + layer for layer in range(1, layers)] for index, name in enumerate(HIDDEN_METRICS)
    }
    return Measurement(
        step,
        values,
        total_grad_norm=2.5,
        first_to_last_grad_ratio=0.25,
        first_to_last_delta_ratio=0.5,
        extra={"train/batch_loss": 1.75},
    )


def test_layer_rows_put_each_layers_values_in_its_row_and_leave_the_outputs_hidden_metrics_empty():
    rows = layer_rows(measurement(step=7, layers=3), epoch=2)
    assert [(row["step"], row["epoch"], row["layer"], row["kind"]) for row in rows] == [
        (7, 2, 1, "hidden"),
        (7, 2, 2, "hidden"),
        (7, 2, 3, "output"),
    ]
    assert [row["delta_norm"] for row in rows] == [41.0, 42.0, 43.0]  # metric 4 of LAYER_METRICS
    assert [row["activation/std"] for row in rows] == [111.0, 112.0, None]
    assert list(rows[0]) == list(LAYER_COLUMNS)


def test_a_step_row_and_a_profile_keep_the_run_level_numbers():
    m = measurement()
    assert step_row(m, 1) == {
        "step": 5,
        "epoch": 1,
        "total_grad_norm": 2.5,
        "first_to_last_grad_ratio": 0.25,
        "first_to_last_delta_ratio": 0.5,
        "train/batch_loss": 1.75,
    }
    assert profile(m) == {
        "step": 5,
        "first_to_last_grad_ratio": 0.25,
        "first_to_last_delta_ratio": 0.5,
        "total_grad_norm": 2.5,
        "layers": m.layers,
    }


def test_a_series_writes_what_it_holds_and_resumes_from_its_state(tmp_path):
    series = Series()
    series.add(measurement(step=0), epoch=1)
    series.add(measurement(step=5), epoch=1)
    series.write(tmp_path)
    rows = list(csv.DictReader((tmp_path / "layers.csv").open()))
    assert [(row["step"], row["layer"]) for row in rows] == [(s, layer) for s in ("0", "5") for layer in "123"]
    assert [row["step"] for row in csv.DictReader((tmp_path / "steps.csv").open())] == ["0", "5"]
    resumed = Series(**series.state())
    resumed.add(measurement(step=9), epoch=2)
    assert resumed.layers.text.startswith(series.layers.text) and resumed.layers.text.count("\n") == 1 + 9


def test_a_series_writes_its_files_again_only_when_it_holds_new_rows(tmp_path, monkeypatch):
    """A run's end (Recorder.finish) after its last epoch's end: the same tables are not written twice."""
    writes = []
    monkeypatch.setattr("vgbench.series.write_atomic", lambda path, data: writes.append(path.name))
    series = Series()
    series.add(measurement(step=0), epoch=1)
    series.write(tmp_path)
    series.write(tmp_path)
    assert writes == ["layers.csv", "steps.csv"]
    series.write(tmp_path / "elsewhere")
    series.add(measurement(step=5), epoch=1)
    series.write(tmp_path)
    assert writes == ["layers.csv", "steps.csv"] * 3


def test_a_csv_table_formats_each_row_once_and_equals_the_whole_table():
    rows = [{"step": 0, "loss": 2.5}, {"step": 1, "loss": float("nan"), "note": "a, b"}]

    def whole(columns, order):  # these rows formatted from scratch
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows([rows[i] for i in order])
        return buffer.getvalue()

    formatted = []

    class Counting:  # the table's csv writer, counting the rows it formats
        def __init__(self, writer):
            self.writer = writer

        def writerow(self, row):
            return self.writer.writerow(row)

        def writerows(self, new):
            formatted.append(len(new))
            return self.writer.writerows(new)

    table = CsvTable(columns=["step"])
    assert table.text == "step\n"
    table.add(rows[:1])
    assert table.text == whole(["step", "loss"], [0])
    table.writer = Counting(table.writer)
    rows.append({"step": 2, "loss": 1.25})
    table.add(rows[2:])  # a new column ("note") comes with row 1: the header and every row again
    table.add(rows[1:2])
    assert table.text == whole(["step", "loss", "note"], [0, 2, 1])
    resumed = CsvTable(table.text)  # from a checkpoint's text
    resumed.writer = Counting(resumed.writer)
    rows.append({"step": 3, "loss": 1.0})
    resumed.add(rows[3:])
    assert resumed.columns == ["step", "loss", "note"] and resumed.text == whole(["step", "loss", "note"], [0, 2, 1, 3])
    assert formatted == [1, 3, 1]
