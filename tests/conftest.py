"""Shared helpers: compose the real Hydra config with overrides, the way the app does; run the app."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from vgbench.config import compose_config

REPO = Path(__file__).resolve().parents[1]
# A tiny, fast synthetic run; tests add their own overrides on top.
TINY = ["data=synthetic", "data.num_train=512", "data.num_test=128", "model.width=32", "trainer.device=cpu",
        "trainer.cpu_threads=1"]  # fmt: skip


def make_cfg(*overrides: str) -> DictConfig:
    return compose_config(overrides)


def run_app(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            module: str = "vgbench.app") -> subprocess.CompletedProcess:  # fmt: skip
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
