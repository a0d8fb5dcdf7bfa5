"""Sweeps through Hydra's launchers, end to end on synthetic data, and the report on what they wrote."""

import csv
import json

import pytest

from tests.conftest import run_app
from vgbench.report import main as report_main
from vgbench.runtime import gpu_for_job, threads_per_job

SWEEP = ["-m", "data=synthetic", "data.num_train=256", "data.num_test=64", "model.width=16", "trainer.epochs=1",
         "trainer.device=cpu", "monitor.every_n_steps=2", "activation=sigmoid,relu", "model.depth=2,3"]  # fmt: skip
RUN_FOLDERS = {
    f"activation={a},data.num_test=64,data.num_train=256,data=synthetic,model.depth={d},"
    "model.width=16,monitor.every_n_steps=2,trainer.epochs=1"
    for a in ("sigmoid", "relu")
    for d in (2, 3)
}


def summaries(sweep_dir):
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}


def check_report_matches(sweep_dir, capsys):
    report_main([str(sweep_dir)])
    assert "report:" in capsys.readouterr().out
    rows = list(csv.DictReader((sweep_dir / "results.csv").open()))
    by_run = summaries(sweep_dir)
    assert {row["run"] for row in rows} == set(by_run)
    for row in rows:
        summary = by_run[row["run"]]
        assert row["status"] == summary["status"]
        if summary["status"] != "failed":
            assert float(row["test_acc"]) == pytest.approx(summary["final"]["test_acc"])
            assert float(row["ratio_step0"]) == pytest.approx(summary["first_to_last_grad_ratio"]["step0"])
            assert row["activation"] == summary["config"]["activation"]["name"]
    for name in ("report.md", "report.html", "headline.png", "profiles.png", "accuracy.png", "heatmap.png",
                 "saturation.png", "learning_curves.png"):  # fmt: skip
        assert (sweep_dir / name).stat().st_size > 0
    return rows


@pytest.mark.parametrize(
    ("launcher", "threads"),
    [("basic", None), ("parallel", None), ("submitit_local_1cpu", 1), ("ray_local", 1)],
)
def test_sweep_with_each_launcher(tmp_path, capsys, launcher, threads):
    overrides = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
    if launcher == "ray_local":
        overrides += ["hydra.launcher.ray.init.num_cpus=2"]
    result = run_app(*SWEEP, *overrides, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = summaries(tmp_path)
    assert set(found) == RUN_FOLDERS  # one folder per run, named by its overrides
    assert all(s["status"] == "completed" for s in found.values())
    if threads is not None:
        assert {s["cpu_threads"] for s in found.values()} == {threads}
    rows = check_report_matches(tmp_path, capsys)
    assert len(rows) == 4


def test_parallel_launcher_gives_each_job_its_share_of_the_cores():
    assert threads_per_job({"_target_": "hydra_plugins.hydra_joblib_launcher.JoblibLauncher", "n_jobs": -1}, 2) == 1
    assert threads_per_job({"_target_": "x.JoblibLauncher", "n_jobs": 2}, 16) == 8
    assert threads_per_job({"_target_": "x.JoblibLauncher", "n_jobs": -2}, 16) == 1  # 15 jobs at once
    assert threads_per_job({"_target_": "x.SlurmLauncher.SubmititLauncher", "cpus_per_task": 4}, 64) == 4
    assert threads_per_job({"_target_": "x.RayLauncher", "ray": {"remote": {"num_cpus": 3}}}, 64) == 3
    assert threads_per_job({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8) is None


def test_local_parallel_jobs_spread_over_the_gpus():
    assert [gpu_for_job(job, 4) for job in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert {gpu_for_job(job, 1) for job in range(3)} == {"cuda:0"}


def test_failing_run_does_not_stop_the_sweep_and_is_reported(tmp_path, capsys):
    result = run_app(*SWEEP[:-1], "model.depth=2,0", "hydra/launcher=parallel", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = summaries(tmp_path)
    statuses = sorted((name.split(",")[0], name.split("model.depth=")[1][0], s["status"]) for name, s in found.items())
    assert statuses == [("activation=relu", "0", "failed"), ("activation=relu", "2", "completed"),
                        ("activation=sigmoid", "0", "failed"), ("activation=sigmoid", "2", "completed")]  # fmt: skip
    rows = check_report_matches(tmp_path, capsys)
    assert sorted(row["error"] for row in rows if row["status"] == "failed") == [
        "model.depth=0 is not valid; it must be >= 1"] * 2  # fmt: skip
    report = (tmp_path / "report.md").read_text()
    assert "Failed: " in report and "model.depth=0 is not valid" in report


def test_rerun_skips_completed_runs(tmp_path):
    first = run_app(*SWEEP, f"hydra.sweep.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = {name: (tmp_path / name / "summary.json").read_text() for name in RUN_FOLDERS}
    again = run_app(*SWEEP, f"hydra.sweep.dir={tmp_path}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already records this run as completed; skipping it") == 4
    assert {name: (tmp_path / name / "summary.json").read_text() for name in RUN_FOLDERS} == before


def test_slurm_preset_composes_without_submitting(tmp_path):
    result = run_app("experiment=vanishing", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                     "hydra.launcher.gpus_per_node=1", "--cfg", "hydra", "--package", "hydra.launcher")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SlurmLauncher" in result.stdout
    for line in ("partition: gpu", "gpus_per_node: 1", "timeout_min: 60", "cpus_per_task: 4", "array_parallelism: 64"):
        assert line in result.stdout
    job = run_app("experiment=vanishing", "hydra/launcher=slurm", "--cfg", "job")
    assert job.returncode == 0 and "resume: true" in job.stdout


def test_presets_define_their_sweeps():
    inits = "model.init: pytorch_default,xavier_uniform,kaiming_normal,uniform_standard"
    for preset, swept in (("vanishing", ["activation: sigmoid,tanh,relu,leaky_relu", "model.depth: 20,10,5,2"]),
                          ("init_study", [inits]),
                          ("lr_study", ["optimizer.lr: 0.0001,0.001,0.01,0.1,1.0,10.0"])):  # fmt: skip
        result = run_app(f"experiment={preset}", "--cfg", "hydra", "--package", "hydra.sweeper")
        assert result.returncode == 0, result.stderr[-2000:]
        for line in swept:
            assert line in result.stdout
