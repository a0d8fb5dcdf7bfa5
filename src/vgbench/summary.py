"""The layout of a run's `summary.json`, written down once. Torch-free: the report reads it.

The trainer writes it (vgbench.train), the job engine writes the failed ones (vgbench.jobs), and the
report, the lessons and the tests read it through `read_summary` and the names below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

from vgbench.config import run_identity
from vgbench.errors import UserError
from vgbench.files import write_json_atomic

SUMMARY_FILE = "summary.json"
FAILED_ATTEMPT_FILE = "failed_attempt.json"  # a failed attempt beside a finished run's summary
CHECKPOINT_FILE = "checkpoint.pt"

COMPLETED, DIVERGED, FAILED = "completed", "diverged", "failed"
FINISHED = (COMPLETED, DIVERGED)  # a summary with one of these holds results that nothing overwrites


class Profile(TypedDict):
    """One measurement of a run, as the summary keeps it (vgbench.monitor.Measurement)."""

    step: int
    first_to_last_grad_ratio: float | None
    first_to_last_delta_ratio: float | None
    total_grad_norm: float | None
    layers: dict[str, list[float | None]]  # metric -> one value per layer, layer 1 (input side) first


class Summary(TypedDict, total=False):
    status: str  # COMPLETED, DIVERGED or FAILED
    error: str  # FAILED only: one line
    final: dict[str, float | None]  # test_loss, test_acc, and the last epoch's train_* and val_* (null: NaN)
    epochs_done: int
    steps: int
    history: list[dict[str, float | None]]  # one record per epoch: epoch, train_loss, train_acc, [val|test]_*
    # trainer.targets (vgbench.targets): condition -> where it first held ({step, epoch, seconds, value}) or null
    targets: dict[str, dict[str, float] | None]
    stopped_at: str | None  # the trainer.stop_at condition that ended the run, or null
    wall_time_s: float
    steps_per_s: float | None
    graphed_steps: int  # of `steps`, those this process ran from a CUDA graph (trainer.cuda_graphs; vgbench.graphs)
    device: str
    cpu_threads: int
    stack_size: int  # runs trained together in one stack (1: alone)
    torch_version: str
    vgbench_version: str
    data_source: str
    first_to_last_grad_ratio: dict[str, float | None]  # "step0" and "final"
    first_to_last_delta_ratio: dict[str, float | None]  # "step0" and "final"
    profile: dict[str, Profile]  # "step0" and "final"; empty with monitor.enabled=false
    flow: dict[str, Any]  # the step-0 gradient flow, classified (vgbench.flow)
    theory: dict[str, Any]  # the mean-field prediction beside the step-0 measurement (vgbench.theory)
    jacobian: dict[str, Any]  # monitor.jacobian: the hidden stack's singular values at step 0
    config: dict[str, Any]  # the resolved config


def read_summary(path: Path) -> Summary:
    """A summary.json; anything else (not JSON, JSON that is not an object, a folder, too deeply nested) is
    a ValueError naming the file."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        raise ValueError(f"{path} is not a readable summary ({reason}); move it away or delete it") from error
    if not isinstance(summary, dict):
        kind = type(summary).__name__
        raise ValueError(f"{path} is not a readable summary (JSON {kind}, not an object); move it away or delete it")
    return summary


class OtherRunError(UserError):
    """The run folder records another run: refused, and nothing is written into it (vgbench.app's
    resolvers keep Hydra's .hydra/ record and log out of it too)."""


def other_run(run_dir: Path, identity: str) -> str | None:
    """Why `run_dir` is not this run's (`identity`: vgbench.config.run_identity) to write into: it records a
    finished run, completed, diverged or failed, of another identity. None when it is (or holds nothing
    readable: reading it is inspect_run_folder's to report)."""
    path = run_dir / SUMMARY_FILE
    try:
        summary = read_summary(path) if path.is_file() else None
    except ValueError:
        return None
    recorded = (summary or {}).get("config")
    if not isinstance(recorded, dict):
        return None
    keys = differing_keys(identity, run_identity(recorded))
    if not keys:
        return None
    return (
        written_by_another_config(f"{run_dir} holds a {summary.get('status', 'unknown')} run that", keys)
        + "; use another folder (hydra.run.dir, or another hydra.sweep.dir for a sweep)"
    )


def differing_keys(identity_a: str, identity_b: str) -> list[str]:
    """The config keys in which two run identities (vgbench.config.run_identity) differ."""
    a, b = json.loads(identity_a), json.loads(identity_b)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def written_by_another_config(what: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:6]) + (" ..." if len(keys) > 6 else "")
    return f"{what} was written by a different config (differs in: {shown})"


def write_summary(run_dir: Path, summary: Summary) -> Path:
    path = run_dir / SUMMARY_FILE
    write_json_atomic(path, summary)
    return path


def record_failure(run_dir: Path, message: str, config: dict[str, Any]) -> Path:
    """Record a failed attempt. Never over a finished run's summary: beside it, in failed_attempt.json."""
    summary: Summary = {"status": FAILED, "error": message, "config": config}
    existing = run_dir / SUMMARY_FILE
    if existing.exists():
        try:
            finished = read_summary(existing).get("status") in FINISHED
        except ValueError:
            finished = True  # unreadable: not ours to overwrite
        if finished:
            path = run_dir / FAILED_ATTEMPT_FILE
            write_json_atomic(path, summary)
            return path
    return write_summary(run_dir, summary)
