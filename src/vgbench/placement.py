"""Who places a job, and where: torch-free, for the launcher process and the jobs alike.

vgbench's local launchers (`hydra/launcher=parallel`, `hydra/launcher=stacked`) run jobs as processes on
this machine, so they decide how many run at once (one per core; on a GPU host at most
`jobs_per_gpu` per GPU, since each process holds a CUDA context and a copy of the data), each job's torch
threads (cores / jobs at once) and, with several GPUs, its GPU (job number mod GPUs). Under SLURM
(submitit) and Ray the engine allocates CPUs and GPUs (`cpus_per_task`, `CUDA_VISIBLE_DEVICES`) and
vgbench takes what it was given.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCAL_LAUNCHERS = ("joblib", "vgbench_launchers")  # _target_ fragments of launchers that run jobs here


@dataclass
class Placement:
    """What the launcher decided for this process (applied by vgbench.runtime): torch threads, GPU slot, whether a
    progress bar may draw (not in a sweep's shared console), and the share of the device's free memory a
    stack may plan for (vgbench.memory; None: no planning, as for a run alone)."""

    threads: int | None = None
    gpu_slot: int | None = None
    progress: bool = True
    memory_share: float | None = None


def available_cores() -> int:
    """Cores this process may use: a SLURM job's allocation, not the whole node."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cgroup_memory_left(proc_cgroup: Path, root: Path) -> list[int]:
    """What is left under each memory limit of this process's cgroup and its parents (v2 and v1)."""
    left = []
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy
            top, limit_file, usage_file = root, "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            top, limit_file, usage_file = root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        folder = top / path.lstrip("/")
        while True:  # a limit may sit on any parent (SLURM's job cgroup above its step's)
            try:
                limit, usage = (folder / limit_file).read_text().strip(), int((folder / usage_file).read_text())
            except (OSError, ValueError):
                limit, usage = "", 0
            if limit.isdigit() and int(limit) < 1 << 60:  # "max", or v1's near-2^63 for none
                left.append(max(0, int(limit) - usage))
            if folder == top or top not in folder.parents:
                break
            folder = folder.parent
    return left


def available_memory(
    meminfo: Path = Path("/proc/meminfo"),
    proc_cgroup: Path = Path("/proc/self/cgroup"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> int | None:
    """Bytes of RAM this process may still take: the kernel's MemAvailable, or less where a cgroup limits
    the process (a SLURM job's --mem, a container's limit); None where neither can be read (not Linux)."""
    candidates = []
    with contextlib.suppress(OSError, KeyError, ValueError):
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        candidates.append(int(fields["MemAvailable"].split()[0]) * 1024)  # kB
    with contextlib.suppress(OSError, ValueError):
        candidates += _cgroup_memory_left(proc_cgroup, cgroup_root)
    return min(candidates) if candidates else None


def visible_gpus() -> int:
    """NVIDIA GPUs this process could use, counted without starting CUDA (no torch import): the
    CUDA_VISIBLE_DEVICES list, else the driver's /proc entries, else `nvidia-smi -L` (virtual machines
    may have no /proc entries)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return len([d for d in listed.split(",") if d.strip() and not d.strip().startswith("-")])
    devices = Path("/proc/driver/nvidia/gpus")
    if devices.is_dir():
        return len(list(devices.iterdir()))
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def is_local_launcher(launcher: dict[str, Any]) -> bool:
    target = str(launcher.get("_target_", ""))
    return any(part in target for part in LOCAL_LAUNCHERS) and launcher.get("executor", "local") == "local"


def local_parallel_jobs(n_jobs: int, cores: int, device: str = "cpu", gpus: int = 0, jobs_per_gpu: int = 0) -> int:
    """Jobs a local launcher runs at once: joblib's n_jobs (-1: one per core, -2: all cores but one),
    and on a CUDA run with GPUs at most `jobs_per_gpu` per GPU."""
    parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    if device != "cpu" and gpus > 0 and jobs_per_gpu > 0:
        parallel = min(parallel, gpus * jobs_per_gpu)
    return parallel


def jobs_at_once(n_jobs: int, device: str, jobs_per_gpu: int) -> int:
    """`local_parallel_jobs` on this machine: its cores and, for runs that may use CUDA, its GPUs."""
    gpus = visible_gpus() if device != "cpu" else 0
    return local_parallel_jobs(n_jobs, available_cores(), device, gpus, jobs_per_gpu)


def jobs_per_device(parallel: int, device: str, gpus: int) -> int:
    """How many of a local launcher's `parallel` jobs at once share one device's memory: all of them on the
    CPU or on one named GPU, else those given one of the `gpus` GPUs (job number mod GPUs)."""
    if device == "cpu" or device.startswith("cuda:") or gpus < 1:
        return parallel
    return math.ceil(parallel / gpus)


def threads_per_job(launcher: dict[str, Any], cores: int) -> int | None:
    """Torch threads for each job of a sweep under `launcher` (Hydra's launcher config), so that the
    jobs running at once never ask for more threads than there are cores; None for the basic launcher.
    A local launcher's `n_jobs` is what it runs at once (vgbench's launchers write the effective value).
    """
    target = str(launcher.get("_target_", "")).lower()
    if is_local_launcher(launcher):
        return max(1, cores // local_parallel_jobs(int(launcher.get("n_jobs", -1)), cores))
    if "submitit" in target:
        return int(launcher.get("cpus_per_task") or 1)
    if launcher.get("executor") in ("submitit_local", "slurm"):
        return int((launcher.get("submitit") or {}).get("cpus_per_task") or 1)
    if "ray" in target:
        return int((launcher.get("ray", {}).get("remote") or {}).get("num_cpus") or 1)
    return None


def gpu_slot(launcher: dict[str, Any], job_num: int | None) -> int | None:
    """A job's GPU slot under a local launcher (its job number); None elsewhere, where the engine's
    allocation decides."""
    return job_num if job_num is not None and is_local_launcher(launcher) else None
