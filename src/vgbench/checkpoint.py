"""A run folder's state, and each run's checkpoint: what makes two runs the same, save, load.

A run is identified by its config less where it runs and how many epochs it is given
(`vgbench.config.run_identity`: model, data, optimizer, loss, seed, amp, monitor settings, ...). A
completed run is skipped, and a checkpoint resumed, only under the same identity; a folder that holds
another run is refused with one line, never overwritten.

A checkpoint holds one run, as a stack of one (tensors keep a leading run dimension of size 1), so a run
trained in a stack resumes alone or in any other stack. It holds no random-generator state: the batch
order and the dropout masks are drawn from (seed, epoch) (vgbench.data, vgbench.model), so a resume is
exact on any device, whatever GPUs are visible.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from vgbench.config import run_identity
from vgbench.errors import ConfigError, UserError
from vgbench.files import save_torch_atomic
from vgbench.summary import (
    CHECKPOINT_FILE,
    COMPLETED,
    SUMMARY_FILE,
    OtherRunError,
    Summary,
    differing_keys,
    other_run,
    read_summary,
    written_by_another_config,
)


class CheckpointError(UserError):
    """A checkpoint that cannot be read, or that belongs to another run."""


@dataclass
class RunFolder:
    """What a run folder holds for a config: nothing yet, a checkpoint to resume, or the completed run."""

    run_dir: Path
    completed: Summary | None = None  # the summary of this very run, completed: skip it
    checkpoint: dict[str, Any] | None = None  # loaded, to resume from
    identity: str | None = None  # the config's run_identity, as inspect_run_folder worked it out
    # the config as plain containers, resolved (what summary.json records): converted once, for the identity,
    # the stack key and the summary (a conversion takes about a millisecond, and a sweep has a thousand runs)
    config: dict[str, Any] | None = None

    @property
    def start_epoch(self) -> int:
        return self.checkpoint["epoch"] if self.checkpoint else 0


def _probe_writable(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryFile(dir=run_dir).close()


def inspect_run_folder(cfg: DictConfig, run_dir: Path) -> RunFolder:
    """Decide what to do with `run_dir` for `cfg`; raise a one-line error where it holds another run or
    cannot be written (before any data loads or any time is spent training)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"the run folder {run_dir} is a file; point hydra.run.dir (or hydra.sweep.dir) elsewhere")
    try:
        _probe_writable(run_dir)
    except OSError as error:
        raise UserError(
            f"cannot write into the run folder {run_dir} ({error.strerror}); point hydra.run.dir (or "
            "hydra.sweep.dir) at a folder you can write"
        ) from error
    config = OmegaConf.to_container(cfg, resolve=True)
    identity = run_identity(config)
    summary_path, checkpoint_path = run_dir / SUMMARY_FILE, run_dir / CHECKPOINT_FILE
    if summary_path.exists():
        try:
            summary = read_summary(summary_path)
        except ValueError as error:
            raise UserError(str(error)) from error
        refusal = other_run(run_dir, identity)  # every finished run, completed, diverged or failed, is its own
        if refusal:
            raise OtherRunError(refusal)
        status, done = summary.get("status"), summary.get("epochs_done")
        if status == COMPLETED and cfg.trainer.skip_completed:
            if done == cfg.trainer.epochs or summary.get("stopped_at"):  # its budget, or its stop condition
                return RunFolder(run_dir, completed=summary, identity=identity, config=config)
            if not checkpoint_path.exists():  # retraining from scratch would overwrite it
                raise UserError(
                    f"{run_dir} holds a completed run of {done} epoch(s) and no checkpoint to continue it from "
                    f"(trainer.checkpoint=false); use another folder, or trainer.epochs={done} to keep it"
                )
    if not checkpoint_path.exists():
        return RunFolder(run_dir, identity=identity, config=config)
    if not cfg.trainer.resume:
        raise ConfigError(
            f"{checkpoint_path} exists; set trainer.resume=true to continue it, or use another run folder"
        )
    checkpoint = load_checkpoint(checkpoint_path)
    keys = differing_keys(checkpoint["identity"], identity)
    if keys:
        raise ConfigError(
            written_by_another_config(str(checkpoint_path), keys)
            + "; resume with the same overrides, or set trainer.resume=false and use another run folder"
        )
    if checkpoint["epoch"] > cfg.trainer.epochs:
        raise ConfigError(
            f"{checkpoint_path} has {checkpoint['epoch']} epochs done, more than trainer.epochs={cfg.trainer.epochs}"
        )
    return RunFolder(run_dir, checkpoint=checkpoint, identity=identity, config=config)


CHECKPOINT_KEYS = (
    "identity",
    "model",
    "optimizer",
    "scaler",
    "epoch",
    "step",
    "history",
    "recorder",
    "targets",
    "train_seconds",
)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint, on the CPU; a truncated or corrupt file is one clear error, not a traceback."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails in many ways on a damaged file
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path} cannot be read ({reason}): it is truncated or corrupt. Move it away to start this run "
            "again from scratch (trainer.resume=false), or resume from a copy you trust"
        ) from error
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} is not a vgbench checkpoint (it lacks {', '.join(missing)}); move it away")
    try:  # the recorder's state is JSON text (save_checkpoint)
        checkpoint["recorder"] = json.loads(checkpoint["recorder"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path} holds no readable monitor series (its recorder state is not JSON text); move it away"
        ) from error
    return checkpoint


def save_checkpoint(
    path: Path,
    identity: str,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    scaler_state: dict[str, Any],
    epoch: int,
    step: int,
    history: list[dict[str, Any]],
    recorder_state: dict[str, Any],
    targets: dict[str, Any],
    train_seconds: float,
) -> None:
    """One run (its `run_identity`, its `vgbench.run_slices` share of the model), written atomically: a crash leaves
    the previous checkpoint whole. `targets` holds where each of the run's targets was reached
    (vgbench.targets), `train_seconds` its training time so far: a resumed run keeps both. The recorder's
    state (its tables as CSV text, its profiles) goes in as one JSON text: torch.save pickles each small
    object with a Python call, json encodes in C, and a large stack's tables hold thousands of them."""
    save_torch_atomic(
        path,
        {
            "identity": identity,
            "model": model_state,
            "optimizer": optimizer_state,
            "scaler": scaler_state,
            "epoch": epoch,
            "step": step,
            "history": history,
            "recorder": json.dumps(recorder_state),
            "targets": targets,
            "train_seconds": train_seconds,
        },
    )
