"""Where and how a run computes: device choice, CPU threads, seeding and determinism."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from vgbench.config import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def available_cores() -> int:
    """Cores this process may use: a SLURM job's allocation, not the whole node."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def gpu_for_job(job_num: int, gpu_count: int) -> str:
    """Local parallel sweeps spread jobs over the GPUs round-robin (joblib assigns none by itself)."""
    return f"cuda:{job_num % gpu_count}"


def resolve_device(name: str, job_num: int | None = None) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; asking for a device that is not there is an error.

    `job_num`: this job's number in a local parallel sweep; with several GPUs, `auto` and `cuda`
    then mean the job's own GPU (`gpu_for_job`).
    """
    if name in ("auto", "cuda") and job_num is not None and torch.cuda.device_count() > 1:
        return torch.device(gpu_for_job(job_num, torch.cuda.device_count()))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("trainer.device='mps' but MPS is not available here; use auto or cpu")
        return torch.device("mps")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.device={name!r} but CUDA is not available here; use auto or cpu")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"trainer.device={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist: "
                f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
        return torch.device(name)
    raise ConfigError(f"trainer.device={name!r} is not valid; choose one of: {DEVICE_CHOICES}")


def configure_threads(cpu_threads: int | str, launcher_threads: int | None = None) -> int:
    """Set torch's intra-op threads; call before the first tensor operation.

    `auto`: the threads a parallel launcher gives each job (`threads_per_job`), else every core this
    process may use (a lone run, or the basic launcher's one-at-a-time sweep).
    """
    threads = (launcher_threads or available_cores()) if cpu_threads == "auto" else int(cpu_threads)
    torch.set_num_threads(threads)
    return threads


def threads_per_job(launcher: dict, cores: int) -> int | None:
    """Torch threads for each job of a sweep under `launcher` (Hydra's launcher config), so that the
    jobs running at once never ask for more threads than there are cores; None for the basic launcher.
    """
    target = str(launcher.get("_target_", "")).lower()  # e.g. ...hydra_submitit_launcher...LocalLauncher
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs", -1))
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores
        return max(1, cores // parallel)
    if "submitit" in target:
        return int(launcher.get("cpus_per_task") or 1)
    if "ray" in target:
        return int((launcher.get("ray", {}).get("remote") or {}).get("num_cpus") or 1)
    return None


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting to be deterministic; it must be set before CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
