"""Sweeps through Hydra's launchers, end to end on synthetic data, and the report on what they wrote."""

import csv
import json
import re

import pytest
import torch
import yaml
from omegaconf import OmegaConf

import vgbench.placement
from tests.conftest import run_app
from vgbench.config import CONF_DIR
from vgbench.errors import ConfigError
from vgbench.placement import (
    available_memory,
    gpu_slot,
    jobs_at_once,
    jobs_per_device,
    local_parallel_jobs,
    threads_per_job,
    visible_gpus,
)
from vgbench.report import main as report_main
from vgbench.runtime import resolve_device

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


def console_lines(stdout):
    """The per-run lines ('[k/N] overrides  status ...'); Ray prefixes its workers' output with their pid."""
    lines = [re.sub(r"^\x1b\[36m\(.*?\)\x1b\[0m ", "", line) for line in stdout.splitlines()]
    return [line for line in lines if line.startswith("[") and "/" in line.split("]")[0]]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "threads"),
    [("basic", None), ("parallel", 1), ("submitit_local_1cpu", 1), ("ray_local", 1), ("stacked", 1),
     ("stacked_submitit_local", 1)],
)  # fmt: skip
def test_sweep_with_each_launcher(tmp_path, capsys, launcher, threads):
    overrides = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
    if launcher == "ray_local":
        overrides += ["hydra.launcher.ray.init.num_cpus=2"]
    if launcher == "stacked_submitit_local":
        overrides = ["hydra/launcher=stacked_slurm", "hydra.launcher.executor=submitit_local",
                     "hydra.launcher.submitit.cpus_per_task=1", "hydra.launcher.submitit.timeout_min=10"]  # fmt: skip
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
    result = run_app(*SWEEP, "hydra/launcher=parallel", "hydra.callbacks.vgbench.report=true",
                     f"hydra.sweep.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    runs = console_lines(result.stdout)
    assert len(runs) == 4
    for line in runs:  # '[k/4] activation=relu,model.depth=2  completed  acc 0.9  first/last 7.8e-01  1.4 s'
        assert line.split()[2] == "completed" and "acc " in line and "first/last " in line and line.endswith(" s")
        assert "activation=" in line and "model.depth=" in line and "data.num_train" not in line  # what was swept
    assert lines[len(runs)] == "findings:"
    assert lines[-2] == f"report: {tmp_path / 'report.html'} (and report.md, results.csv, 9 figures)"
    assert len(lines) <= len(runs) + 12  # the runs, then the findings
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
            summary["first_to_last_grad_ratio"]["step0"], rel=1e-5)  # fmt: skip
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


def test_parallel_launcher_gives_each_job_its_share_of_the_cores():
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    ours = "hydra_plugins.vgbench_launchers.parallel.ParallelLauncher"
    assert threads_per_job({"_target_": ours, "n_jobs": -1}, 2) == 1
    assert threads_per_job({"_target_": joblib, "n_jobs": 2}, 16) == 8
    assert threads_per_job({"_target_": ours, "n_jobs": -2}, 16) == 1  # 15 jobs at once
    assert threads_per_job({"_target_": "x.SlurmLauncher.SubmititLauncher", "cpus_per_task": 4}, 64) == 4
    assert threads_per_job({"_target_": "x.RayLauncher", "ray": {"remote": {"num_cpus": 3}}}, 64) == 3
    stacked = "hydra_plugins.vgbench_launchers.stacked.StackedLauncher"
    assert threads_per_job({"_target_": stacked, "n_jobs": 4, "executor": "local"}, 16) == 4
    assert threads_per_job({"_target_": stacked, "executor": "slurm", "submitit": {"cpus_per_task": 6}}, 64) == 6
    assert threads_per_job({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8) is None


def test_the_jobs_that_share_a_devices_memory():
    assert jobs_per_device(4, "cpu", gpus=2) == 4  # CPU runs share the machine's memory
    assert jobs_per_device(8, "auto", gpus=2) == 4  # job number mod GPUs: 4 on each
    assert jobs_per_device(5, "cuda", gpus=2) == 3
    assert jobs_per_device(4, "cuda:1", gpus=2) == 4  # all on the one GPU named
    assert jobs_per_device(4, "auto", gpus=0) == 4  # auto on a machine without GPUs: the CPU


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_available_memory_is_the_kernels_or_less_under_a_cgroup_limit(tmp_path):
    meminfo = write(tmp_path / "meminfo", "MemTotal:       32000000 kB\nMemAvailable:   20000000 kB\n")
    root = tmp_path / "cgroup"
    v2 = write(tmp_path / "v2", "0::/slurm/job_7/step_0\n")
    write(root / "slurm/job_7/memory.max", f"{8 * 2**30}\n")  # the job's --mem, on the step's parent
    write(root / "slurm/job_7/memory.current", f"{3 * 2**30}\n")
    write(root / "slurm/job_7/step_0/memory.max", "max\n")
    write(root / "slurm/job_7/step_0/memory.current", f"{2 * 2**30}\n")
    assert available_memory(meminfo, v2, root) == 5 * 2**30
    v1 = write(tmp_path / "v1", "5:cpu:/\n4:memory:/docker/abc\n")
    write(root / "memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    write(root / "memory/docker/abc/memory.usage_in_bytes", "123\n")
    assert available_memory(meminfo, v1, root) == 20000000 * 1024
    write(root / "memory/docker/abc/memory.limit_in_bytes", f"{4 * 2**30}\n")
    assert available_memory(meminfo, v1, root) == 4 * 2**30 - 123
    assert available_memory(tmp_path / "none", tmp_path / "none", root) is None  # not Linux: no planning


def test_on_a_gpu_host_the_local_launchers_cap_jobs_per_gpu():
    assert local_parallel_jobs(-1, 16) == 16
    assert local_parallel_jobs(-1, 16, "auto", gpus=1, jobs_per_gpu=4) == 4
    assert local_parallel_jobs(-1, 16, "cuda", gpus=2, jobs_per_gpu=4) == 8
    assert local_parallel_jobs(-1, 16, "cpu", gpus=2, jobs_per_gpu=4) == 16  # CPU runs use the cores
    assert local_parallel_jobs(3, 16, "auto", gpus=0, jobs_per_gpu=4) == 3


def test_jobs_at_once_counts_this_machines_gpus_for_cuda_runs_only(monkeypatch):
    monkeypatch.setattr(vgbench.placement, "available_cores", lambda: 16)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert jobs_at_once(-1, "cuda", 4) == 8 and jobs_at_once(-1, "auto", 1) == 2
    assert jobs_at_once(-1, "cpu", 4) == 16 and jobs_at_once(3, "cuda", 4) == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert jobs_at_once(-2, "auto", 4) == 15  # no GPU visible: the cores decide


def test_visible_gpus_without_torch(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    assert visible_gpus() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == 0


def fake_gpus(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_only_local_launchers_map_jobs_to_gpus(monkeypatch):
    local = {"_target_": "hydra_plugins.vgbench_launchers.parallel.ParallelLauncher", "n_jobs": 8}
    slurm = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}
    ray = {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"}
    fake_gpus(monkeypatch, 4)
    assert [str(resolve_device("auto", gpu_slot(local, job))) for job in range(6)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]  # fmt: skip
    assert str(resolve_device("cuda", gpu_slot(local, 5))) == "cuda:1"
    for engine in (slurm, ray):  # the engine's allocation (CUDA_VISIBLE_DEVICES) decides: its first GPU
        assert gpu_slot(engine, 5) is None
        assert str(resolve_device("cuda", gpu_slot(engine, 5))) == "cuda"
    assert str(resolve_device("cuda:2")) == "cuda:2"
    with pytest.raises(ConfigError, match=r"trainer.device='cuda:4' but only 4 CUDA device\(s\) are visible"):
        resolve_device("cuda:4")


def test_cuda_with_none_allocated_is_an_error_and_auto_says_so(monkeypatch, caplog):
    fake_gpus(monkeypatch, 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError, match="no CUDA device is visible here .*the launcher allocated this job none"):
        resolve_device("cuda")
    assert str(resolve_device("auto")) == "cpu"
    assert "allocated this job no GPU" in caplog.text


@pytest.mark.slow
def test_failing_run_does_not_stop_the_sweep_and_is_reported(tmp_path, capsys):
    result = run_app(*SWEEP[:-1], "model.depth=2,0", "hydra/launcher=parallel", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = summaries(tmp_path)
    statuses = sorted((name.split(",")[0], name.split("model.depth=")[1][0], s["status"]) for name, s in found.items())
    assert statuses == [("activation=relu", "0", "failed"), ("activation=relu", "2", "completed"),
                        ("activation=sigmoid", "0", "failed"), ("activation=sigmoid", "2", "completed")]  # fmt: skip
    assert sum("failed  model.depth=0 is not valid" in line for line in console_lines(result.stdout)) == 2
    rows = check_report_matches(tmp_path, capsys)
    assert sorted(row["error"] for row in rows if row["status"] == "failed") == [
        "model.depth=0 is not valid; it must be >= 1"] * 2  # fmt: skip
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
        "exclude_keys"]  # fmt: skip
    keys = ",".join([*exclude, "model.init"])
    other = run_app(*SWEEP, "model.init=xavier_normal", "trainer.resume=true", f"hydra.sweep.dir={tmp_path}",
                    f"hydra.job.config.override_dirname.exclude_keys=[{keys}]")  # fmt: skip
    assert other.returncode == 0
    lines = console_lines(other.stdout)
    assert len(lines) == 4 and all("failed" in line and "differs in: model.init" in line for line in lines)
    assert {name: (tmp_path / name / "summary.json").read_text() for name in RUN_FOLDERS} == before
    assert all((tmp_path / name / "failed_attempt.json").exists() for name in RUN_FOLDERS)


@pytest.mark.slow
def test_slurm_presets_compose_without_submitting(tmp_path):
    result = run_app("experiment=vanishing", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                     "hydra.launcher.gpus_per_node=1", "--cfg", "hydra", "--package", "hydra.launcher")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SlurmLauncher" in result.stdout
    for line in ("partition: gpu", "gpus_per_node: 1", "timeout_min: 60", "cpus_per_task: 4", "array_parallelism: 64"):
        assert line in result.stdout
    job = run_app("experiment=vanishing", "hydra/launcher=slurm", "--cfg", "job")
    assert job.returncode == 0 and "resume: true" in job.stdout
    stacked = run_app("experiment=vanishing", "hydra/launcher=stacked_slurm", "--cfg", "hydra", "--package",
                      "hydra.launcher")  # fmt: skip
    assert stacked.returncode == 0, stacked.stderr[-3000:]
    assert "StackedLauncher" in stacked.stdout and "executor: slurm" in stacked.stdout


@pytest.mark.slow
def test_presets_define_their_sweeps():
    inits = "model.init: pytorch_default,xavier_uniform,kaiming_normal,uniform_standard"
    for preset, swept in (("vanishing", ["activation: sigmoid,tanh,relu,leaky_relu", "model.depth: 20,10,5,2"]),
                          ("init_study", [inits]),
                          ("lr_study", ["optimizer.lr: 0.0001,0.001,0.01,0.1,1.0,10.0"])):  # fmt: skip
        result = run_app(f"experiment={preset}", "--cfg", "hydra", "--package", "hydra.sweeper")
        assert result.returncode == 0, result.stderr[-2000:]
        for line in swept:
            assert line in result.stdout


@pytest.mark.slow
def test_the_parallel_launcher_caps_its_jobs_per_gpu(tmp_path):
    """On a host with one GPU (CUDA_VISIBLE_DEVICES=0) and a CUDA run, jobs_per_gpu=1 runs one job at a
    time, and each job is told so (its .hydra record). The jobs themselves fail here: no GPU is visible."""
    result = run_app(*SWEEP, "trainer.device=cuda", "hydra/launcher=parallel", "hydra.launcher.jobs_per_gpu=1",
                     f"hydra.sweep.dir={tmp_path}", env={"CUDA_VISIBLE_DEVICES": "0"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [yaml.safe_load((tmp_path / name / ".hydra" / "hydra.yaml").read_text()) for name in RUN_FOLDERS]
    assert {r["hydra"]["launcher"]["n_jobs"] for r in records} == {1}
    assert all(s["status"] == "failed" and "trainer.device='cuda'" in s["error"] for s in summaries(tmp_path).values())
