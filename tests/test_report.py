"""The report's numbers come from the runs: hand-made runs with known values, a single run, a partial sweep."""

import csv
import shutil

import pytest
import yaml

from tests.conftest import TINY, make_cfg, run_app
from vgbench.report import Run, by_activation_depth, findings, log_mean_spread, main, missing_runs, write_report
from vgbench.train import run


def fake_run(activation, depth, ratio, accuracy, seed=0, status="completed", error=None):
    summary = {
        "status": status,
        "final": {"test_acc": accuracy},
        "first_to_last_grad_ratio": {"step0": ratio},
        "config": {"activation": {"name": activation}, "model": {"depth": depth}, "trainer": {"seed": seed}},
    }
    if error:
        summary["error"] = error
    return Run(name=f"{activation}-{depth}-{seed}", summary=summary, overrides=[])


def test_findings_are_computed_from_the_runs():
    runs = [fake_run("sigmoid", 2, 1e-1, 0.9), fake_run("sigmoid", 10, 1e-6, 0.1),
            fake_run("relu", 2, 2.0, 0.97), fake_run("relu", 10, 0.5, 0.95),
            fake_run("tanh", 5, None, None, status="failed", error="RuntimeError: boom"),
            fake_run("relu", 20, 0.3, 0.1, status="diverged")]  # fmt: skip
    lines = findings(runs, by_activation_depth(runs), 0.1, missing=["activation=tanh,model.depth=10"])
    text = "\n".join(lines)
    assert (
        "**sigmoid**: first-to-last gradient ratio at step 0 is 1.0e-01 at depth 2, 1.0e-06 at depth 10: "
        "the first layer's gradient trails the output layer's by 1.0 to 6.0 orders of magnitude."
    ) in text
    assert "**relu**: first-to-last gradient ratio at step 0 is 2.0e+00 at depth 2, 5.0e-01 at depth 10, " in text
    assert "stays within 0.5 orders of magnitude of the last's" in text
    assert "Near chance (0.10) after training: sigmoid at depth 10 (0.100); relu at depth 20 (0.100)." in text
    assert "Diverged: relu-20-0." in text
    assert "Failed: tanh-5-0 (RuntimeError: boom)." in text
    assert "Missing (1 of the sweep's runs have no summary yet): activation=tanh,model.depth=10." in text


def test_seeds_are_averaged_geometrically_for_ratios():
    runs = [fake_run("sigmoid", 10, 1e-6, 0.1, seed=0), fake_run("sigmoid", 10, 1e-4, 0.12, seed=1)]
    mean, low, high = log_mean_spread([r.ratio("step0") for r in runs])
    assert (mean, low, high) == pytest.approx((1e-5, 1e-6, 1e-4))
    text = "\n".join(findings(runs, by_activation_depth(runs), 0.1, []))
    assert "1.0e-05 at depth 10 (runs 1.0e-06 to 1.0e-04)" in text
    assert "sigmoid at depth 10 (0.110 ± 0.010)" in text
    assert "Values are means over 2 to 2 seeds" in text


def test_report_on_a_single_run(tmp_path, capsys):
    summary = run(make_cfg(*TINY, "trainer.epochs=1", "monitor.every_n_steps=2"), tmp_path)
    main([str(tmp_path)])
    printed = capsys.readouterr().out
    assert f"report: {tmp_path / 'report.html'}" in printed
    accuracy = summary["final"]["test_acc"]
    assert f"- Learned: relu at depth 3 ({accuracy:.3f})." in printed  # the findings, in the terminal too
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 1 and rows[0]["run"] == "."
    assert float(rows[0]["ratio_step0"]) == pytest.approx(summary["first_to_last_grad_ratio"]["step0"])
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6  # self-contained
    assert "1 run(s)" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_partial_sweep_names_what_is_missing(tmp_path):
    sweep = ["-m", *TINY, "trainer.epochs=1", "activation=sigmoid,relu", "model.depth=1,2"]
    result = run_app(*sweep, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    cut_off = next(tmp_path.glob("activation=relu*model.depth=2*"))
    shutil.rmtree(cut_off)  # as if the sweep was cut off before this run
    report = write_report(tmp_path).files["report.md"].read_text()
    assert "3 run(s)" in report and "1 of the sweep's runs missing" in report
    assert "Missing (1 of the sweep's runs have no summary yet): activation=relu,model.depth=2." in report
    runs = [Run(p.parent.name, {}, yaml.safe_load((p.parent / ".hydra" / "overrides.yaml").read_text()))
            for p in tmp_path.glob("*/summary.json")]  # fmt: skip
    assert missing_runs(tmp_path, runs) == ["activation=relu,model.depth=2"]


def test_report_on_an_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no summary.json under"):
        main([str(tmp_path)])
