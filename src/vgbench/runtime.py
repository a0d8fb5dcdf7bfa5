"""Where and how a run computes: device choice, CPU threads, seeding and determinism."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from vgbench.config import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; asking for a device that is not there is an error."""
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


def configure_threads(cpu_threads: int | str, concurrent_jobs: int = 1) -> int:
    """Set torch's intra-op threads; call before the first tensor operation.

    `auto` shares the cores among the jobs that run at once (all cores for a lone run), so parallel
    sweep jobs never oversubscribe the machine.
    """
    threads = max(1, (os.cpu_count() or 1) // concurrent_jobs) if cpu_threads == "auto" else int(cpu_threads)
    torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting to be deterministic; it must be set before CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
