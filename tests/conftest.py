"""Shared helpers: compose the real Hydra config with overrides, the way the app does; run the app."""

from __future__ import annotations

import copy
import csv
import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write
from torch.profiler import ProfilerActivity, profile

from vgbench.config import CONF_DIR, USER_CONF_ENV, compose_config, register_configs

REPO = Path(__file__).resolve().parents[1]
# A tiny, fast synthetic run; tests add their own overrides on top.
TINY = [
    "data=synthetic",
    "data.num_train=512",
    "data.num_test=128",
    "model.width=32",
    "trainer.device=cpu",
    "trainer.cpu_threads=1",
]


SWEEP_BASE = ["data=synthetic", "activation=tanh", "model.depth=3"]  # what hydra_loader's master config sets


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (make test: -n auto) each worker keeps to one core of its own, and so do the
    sweeps and runs it starts (the affinity is inherited, and vgbench's threads follow the cores it may
    use): two workers never fight over a core."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > 1:
            os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})
            torch.set_num_threads(1)


@functools.cache
def _composed(overrides: tuple[str, ...], user_config_dir: str | None) -> DictConfig:
    return compose_config(overrides)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests first (in their order): under pytest-xdist's work stealing the long ones start early
    and the short ones fill the gaps at the end, instead of one worker finishing a long test alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def make_cfg(*overrides: str) -> DictConfig:
    """The app's config with these overrides. Hydra's composition is the slow part of many tests, so each
    set of overrides (and user config folder) is composed once; every call gets its own deep copy."""
    return copy.deepcopy(_composed(overrides, os.environ.get(USER_CONF_ENV)))


@pytest.fixture
def hydra_loader():
    """(Hydra's config loader, the master config of a multirun), as a sweeper and launcher see them."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        master = compose("config", overrides=SWEEP_BASE, return_hydra_config=True)
        with read_write(master), open_dict(master):
            master.hydra.mode = RunMode.MULTIRUN
            master.hydra.job.name = "train"
        yield GlobalHydra.instance().hydra.config_loader, master
    GlobalHydra.instance().clear()


def run_app(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, module: str = "vgbench.app"
) -> subprocess.CompletedProcess:
    """Run a vgbench command line in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def peak_bytes(work: Callable[[], object]) -> int:
    """The most bytes `work` held at once above what was live before it, from the profiler's record of
    allocations (CPU tensors)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        work()
    changes = sorted(
        (event.time_range.start, event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage)
        for event in prof.events()
    )
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak
