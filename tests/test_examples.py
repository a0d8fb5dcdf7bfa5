"""The examples of examples/, each run on a small budget of synthetic data as a user runs it, then
vgbench-report and TensorBoard's reader on what they wrote."""

import csv
import json
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import REPO
from vgbench.report import main as report_main

SMALL = ["--synthetic", "--steps", "12", "--every", "4"]


def run_example(name, *args):
    result = subprocess.run(
        [sys.executable, REPO / "examples" / name, *SMALL, *args],
        capture_output=True,
        text=True,
        cwd=REPO / "examples",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_the_cnn_example_writes_watched_runs_that_the_report_groups_by_architecture_over_seeds(tmp_path, capsys):
    out = run_example("cnn_sigmoid_vs_relu.py", "--depths", "2", "6", "--seeds", "0", "1", "--out", str(tmp_path))
    assert out.count("first/last gradient") == 8  # 2 activations x 2 depths x 2 seeds
    summaries = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")}
    assert len(summaries) == 8
    report_main([str(tmp_path)])
    assert "report:" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert {row["run"] for row in rows} == set(summaries)
    for row in rows:  # each row is its run's own numbers
        summary = summaries[row["run"]]
        assert float(row["ratio_step0"]) == pytest.approx(summary["first_to_last_grad_ratio"]["step0"])
        assert row["activation"] == summary["config"]["activation"] and row["depth"] == str(summary["config"]["depth"])
    report = (tmp_path / "report.md").read_text()
    assert "4 group(s) of 2 seeds" in report  # the seeds are averaged, not groups of their own
    sigmoid6 = [s for s in summaries.values() if s["config"] == {**s["config"], "activation": "sigmoid", "depth": 6}]
    relu2 = [s for s in summaries.values() if s["config"] == {**s["config"], "activation": "relu", "depth": 2}]
    assert max(s["first_to_last_grad_ratio"]["step0"] for s in sigmoid6) < min(
        s["first_to_last_grad_ratio"]["step0"] for s in relu2
    )
    events = EventAccumulator(str(next(tmp_path.glob("activation=sigmoid,depth=6,seed=0"))))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "grad_norm/weight/layer_01",
        "grad_norm/weight/layer_07",
        "delta_norm/layer_07",
        "grad_norm/total",
        "activation/saturated/layer_06",
        "train/batch_loss",
    } <= tags
    assert [e.step for e in events.Scalars("grad_norm/weight/layer_01")] == [0, 4, 8]
    assert "layers/text_summary" in events.Tags()["tensors"]  # the module names, on the Text tab


@pytest.mark.slow
def test_the_resnet_example_shows_skips_keeping_the_gradient(tmp_path):
    run_example("resnet_skips.py", "--blocks", "6", "--seeds", "0", "--out", str(tmp_path))
    ratio = {
        (s["config"]["skip"], s["config"]["batchnorm"]): s["first_to_last_grad_ratio"]["step0"]
        for s in (json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json"))
    }
    assert len(ratio) == 4
    assert ratio[(True, False)] > 10 * ratio[(False, False)]  # plain ReLU convs lose the gradient; skips keep it


@pytest.mark.slow
def test_the_lightning_example_writes_a_watched_run(tmp_path):
    pytest.importorskip("lightning")
    run_example("lightning_module.py", "--seeds", "0", "--out", str(tmp_path))
    summary = json.loads((tmp_path / "depth=6,seed=0" / "summary.json").read_text())
    assert summary["measured_steps"] == 3 and summary["flow"]["kind"] == "vanishing toward the input"
    assert "train_loss" in summary["final"]
