"""Who places a job, and where (vgbench.placement): cores, GPUs and memory, torch-free."""

import vgbench.placement
from vgbench.placement import (
    available_memory,
    jobs_at_once,
    jobs_per_device,
    local_parallel_jobs,
    threads_per_job,
    visible_gpus,
)


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
