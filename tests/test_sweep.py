"""Sweeps through Hydra's launchers, end to end on synthetic data, and the report on what they wrote."""

import csv
import json
import re

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from tests.conftest import run_app
from vgbench.config import CONF_DIR
from vgbench.report import main as report_main

SWEEP = [
    "-m",
    "data=synthetic",
    "data.num_train=256",
    "data.num_test=64",
    "model.width=16",
    "trainer.epochs=1",
    "trainer.device=cpu",
    "monitor.every_n_steps=2",
    "activation=sigmoid,relu",
    "model.depth=2,3",
]
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
    for name in (
        "report.md",
        "report.html",
        "headline.png",
        "profiles.png",
        "accuracy.png",
        "heatmap.png",
        "saturation.png",
        "learning_curves.png",
    ):
        assert (sweep_dir / name).stat().st_size > 0
    return rows


def console_lines(stdout):
    """The per-run lines ('[k/N] overrides  status ...'); Ray prefixes its workers' output with their pid."""
    lines = [re.sub(r"^\x1b\[36m\(.*?\)\x1b\[0m ", "", line) for line in stdout.splitlines()]
    return [line for line in lines if line.startswith("[") and "/" in line.split("]")[0]]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "threads"),
    [
        ("basic", None),
        ("parallel", 1),
        ("submitit_local_1cpu", 1),
        ("ray_local", 1),
        ("stacked", 1),
        ("stacked_submitit_local", 1),
    ],
)
def test_sweep_with_each_launcher(tmp_path, capsys, launcher, threads):
    overrides = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
    if launcher == "ray_local":
        overrides += ["hydra.launcher.ray.init.num_cpus=2"]
    if launcher == "stacked_submitit_local":
        overrides = [
            "hydra/launcher=stacked_slurm",
            "hydra.launcher.executor=submitit_local",
            "hydra.launcher.submitit.cpus_per_task=1",
            "hydra.launcher.submitit.timeout_min=10",
        ]
    result = run_app(*SWEEP, *overrides, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = summaries(tmp_path)
    assert set(found) == RUN_FOLDERS  # one folder per run, named by its overrides
    assert all(s["status"] == "completed" for s in found.values())
    if threads is not None:
        assert {s["cpu_threads"] for s in found.values()} == {threads}
    if launcher.startswith("stacked"):  # activation x depth: four shapes, four stacks of one
        assert {s["stack_size"] for s in found.values()} == {1}
        assert all((tmp_path / name / ".hydra" / "overrides.yaml").exists() for name in RUN_FOLDERS)
    if launcher not in ("submitit_local_1cpu", "stacked_submitit_local"):  # submitit's tasks print to their logs
        lines = console_lines(result.stdout)
        assert len(lines) == 4 and {line.split("]")[0] for line in lines} == {"[1/4", "[2/4", "[3/4", "[4/4"}
    rows = check_report_matches(tmp_path, capsys)
    assert len(rows) == 4


@pytest.mark.slow
def test_a_sweeps_console_is_one_line_per_run_and_the_callback_writes_the_report(tmp_path):
    result = run_app(
        *SWEEP, "hydra/launcher=parallel", "hydra.callbacks.vgbench.report=true", f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    runs = console_lines(result.stdout)
    assert len(runs) == 4
    for line in runs:  # '[k/4] activation=relu,model.depth=2  completed  acc 0.9  first/last 7.8e-01  1.4 s'
        assert line.split()[2] == "completed" and "acc " in line and "first/last " in line and line.endswith(" s")
        assert "activation=" in line and "model.depth=" in line and "data.num_train" not in line  # what was swept
    assert lines[len(runs)] == "findings:"
    assert lines[-2] == f"report: {tmp_path / 'report.html'} (and report.md, results.csv, tables.csv, 10 figures)"
    assert len(lines) <= len(runs) + 13  # the runs, then the findings (a line per target among them)
    assert "epoch 1/1" not in result.stdout and "MLP" not in result.stdout  # each run's log is in its folder
    assert all("epoch 1/1" in (tmp_path / name / "train.log").read_text() for name in RUN_FOLDERS)
    assert (tmp_path / "report.html").exists()
    verbose = run_app(*SWEEP, "hydra.verbose=true", f"hydra.sweep.dir={tmp_path / 'verbose'}")
    assert "epoch 1/1" in verbose.stdout and "Launching 4 jobs locally" in verbose.stdout


@pytest.mark.slow
def test_stacked_and_parallel_launchers_give_the_same_runs(tmp_path):
    """activation x depth x seeds: the stacked launcher makes one stack per shape, of its 2 seeds, and
    writes the same run folders, the same numbers and the same report as one process per run."""
    sweep = [*SWEEP, "trainer.seed=0,1"]
    for launcher in ("parallel", "stacked"):
        result = run_app(*sweep, f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path / launcher}")
        assert result.returncode == 0, result.stderr[-3000:]
    parallel, stacked = summaries(tmp_path / "parallel"), summaries(tmp_path / "stacked")
    assert set(parallel) == set(stacked) and len(parallel) == 8
    assert {s["stack_size"] for s in stacked.values()} == {2}
    for name, summary in parallel.items():
        other = stacked[name]
        assert other["history"][0]["train_loss"] == pytest.approx(summary["history"][0]["train_loss"], rel=1e-4)
        assert other["final"]["test_acc"] == pytest.approx(summary["final"]["test_acc"], abs=0.01)
        assert other["first_to_last_grad_ratio"]["step0"] == pytest.approx(
            summary["first_to_last_grad_ratio"]["step0"], rel=1e-5
        )
    from vgbench.report import write_report

    reports = [write_report(tmp_path / launcher).findings for launcher in ("parallel", "stacked")]
    assert reports[0] == reports[1]
    for name in parallel:  # each run's record: the stacked launcher writes what Hydra's run_job writes
        records = [tmp_path / launcher / name / ".hydra" for launcher in ("parallel", "stacked")]
        for file in ("config.yaml", "overrides.yaml"):
            assert (records[1] / file).read_text() == (records[0] / file).read_text(), file
        hydra = [OmegaConf.load(record / "hydra.yaml").hydra for record in records]
        assert hydra[1].job.num == hydra[0].job.num and hydra[1].overrides.task == hydra[0].overrides.task
        assert (records[1] / "hydra.yaml").read_text() == OmegaConf.to_yaml({"hydra": hydra[1]})
    for name in stacked:  # each run's train.log: the stack's lines, and of those about one run its own only
        log = (tmp_path / "stacked" / name / "train.log").read_text()
        assert "2 run(s) of a" in log and f"{name}: epoch 1/1: " in log and f"{name}: completed: " in log
        assert log.count(": epoch 1/1: ") == 1 and log.count(": completed: ") == 1, log


@pytest.mark.slow
def test_failing_run_does_not_stop_the_sweep_and_is_reported(tmp_path, capsys):
    result = run_app(*SWEEP[:-1], "model.depth=2,0", "hydra/launcher=parallel", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = summaries(tmp_path)
    statuses = sorted((name.split(",")[0], name.split("model.depth=")[1][0], s["status"]) for name, s in found.items())
    assert statuses == [
        ("activation=relu", "0", "failed"),
        ("activation=relu", "2", "completed"),
        ("activation=sigmoid", "0", "failed"),
        ("activation=sigmoid", "2", "completed"),
    ]
    assert sum("failed  model.depth=0 is not valid" in line for line in console_lines(result.stdout)) == 2
    rows = check_report_matches(tmp_path, capsys)
    assert (
        sorted(row["error"] for row in rows if row["status"] == "failed")
        == ["model.depth=0 is not valid; it must be >= 1"] * 2
    )
    report = (tmp_path / "report.md").read_text()
    assert "Failed: " in report and "model.depth=0 is not valid" in report


@pytest.mark.slow
def test_rerun_skips_completed_runs(tmp_path):
    first = run_app(*SWEEP, f"hydra.sweep.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = {name: (tmp_path / name / "summary.json").read_text() for name in RUN_FOLDERS}
    again = run_app(*SWEEP, f"hydra.sweep.dir={tmp_path}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert [line.split()[2] for line in console_lines(again.stdout)] == ["skipped"] * 4
    assert {name: (tmp_path / name / "summary.json").read_text() for name in RUN_FOLDERS} == before


@pytest.mark.slow
def test_a_sweep_folder_holding_another_sweeps_runs_is_refused_run_by_run(tmp_path):
    first = run_app(*SWEEP, f"hydra.sweep.dir={tmp_path}")
    assert first.returncode == 0
    before = {name: (tmp_path / name / "summary.json").read_text() for name in RUN_FOLDERS}
    # another sweep whose folders have the same names: a setting that is not in the folder name differs (as
    # when a preset changes); here model.init, kept out of the names
    exclude = yaml.safe_load((CONF_DIR / "config.yaml").read_text())["hydra"]["job"]["config"]["override_dirname"][
        "exclude_keys"
    ]
    keys = ",".join([*exclude, "model.init"])
    other = run_app(
        *SWEEP,
        "model.init=xavier_normal",
        "trainer.resume=true",
        f"hydra.sweep.dir={tmp_path}",
        f"hydra.job.config.override_dirname.exclude_keys=[{keys}]",
    )
    assert other.returncode == 0
    lines = console_lines(other.stdout)
    assert len(lines) == 4 and all("failed" in line and "differs in: model.init" in line for line in lines)
    assert {name: (tmp_path / name / "summary.json").read_text() for name in RUN_FOLDERS} == before
    assert not any((tmp_path / name / "failed_attempt.json").exists() for name in RUN_FOLDERS)  # nothing written


@pytest.mark.slow
def test_slurm_presets_compose_without_submitting(tmp_path):
    result = run_app(
        "experiment=vanishing",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=1",
        "--cfg",
        "hydra",
        "--package",
        "hydra.launcher",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SlurmLauncher" in result.stdout
    for line in ("partition: gpu", "gpus_per_node: 1", "timeout_min: 60", "cpus_per_task: 4", "array_parallelism: 64"):
        assert line in result.stdout
    job = run_app("experiment=vanishing", "hydra/launcher=slurm", "--cfg", "job")
    assert job.returncode == 0 and "resume: true" in job.stdout
    stacked = run_app(
        "experiment=vanishing", "hydra/launcher=stacked_slurm", "--cfg", "hydra", "--package", "hydra.launcher"
    )
    assert stacked.returncode == 0, stacked.stderr[-3000:]
    assert "StackedLauncher" in stacked.stdout and "executor: slurm" in stacked.stdout


@pytest.mark.slow
def test_presets_define_their_sweeps():
    inits = "model.init: pytorch_default,xavier_uniform,kaiming_normal,uniform_standard"
    for preset, swept in (
        ("vanishing", ["activation: sigmoid,tanh,relu,leaky_relu", "model.depth: 20,10,5,2"]),
        ("init_study", [inits]),
        ("lr_study", ["optimizer.lr: 0.0001,0.001,0.01,0.1,1.0,10.0"]),
    ):
        result = run_app(f"experiment={preset}", "--cfg", "hydra", "--package", "hydra.sweeper")
        assert result.returncode == 0, result.stderr[-2000:]
        for line in swept:
            assert line in result.stdout


@pytest.mark.slow
def test_the_parallel_launcher_caps_its_jobs_per_gpu(tmp_path):
    """On a host with one GPU (CUDA_VISIBLE_DEVICES=0) and a CUDA run, jobs_per_gpu=1 runs one job at a
        time, and each job is told so (its .hydra record). Each job records its end: it trains where a GPU is
    there and fails with one line where none is."""
    result = run_app(
        *SWEEP,
        "trainer.device=cuda",
        "hydra/launcher=parallel",
        "hydra.launcher.jobs_per_gpu=1",
        f"hydra.sweep.dir={tmp_path}",
        env={"CUDA_VISIBLE_DEVICES": "0"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [yaml.safe_load((tmp_path / name / ".hydra" / "hydra.yaml").read_text()) for name in RUN_FOLDERS]
    assert {r["hydra"]["launcher"]["n_jobs"] for r in records} == {1}
    written = summaries(tmp_path)
    assert set(written) == RUN_FOLDERS  # every job ran and recorded its end
    if torch.cuda.is_available():  # a GPU host: the one visible GPU trains them, one at a time
        assert {s["status"] for s in written.values()} == {"completed"}
    else:
        assert {s["status"] for s in written.values()} == {"failed"}
        assert all("trainer.device='cuda'" in s["error"] for s in written.values())
