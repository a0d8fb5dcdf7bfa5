"""The job engine: train the runs one process was given, each failing alone.

Each run is validated and its folder inspected on its own (`vgbench.train.open_run`), so a bad one fails
alone with `status: failed` in its folder; the rest train in as few stacks as their shapes and checkpoints
allow. A stack too big for the memory its placement gives it trains as smaller ones, one after another
(vgbench.memory). A completed run's summary is never overwritten by a failed attempt (vgbench.summary).

The command line (vgbench.app) and the stacked launcher call `train_jobs`. Importing this module loads no
torch (a sweep's launcher process unpickles each job's JobResult); `train_jobs` loads the trainer.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from vgbench.config import group_into_stacks, stack_key
from vgbench.errors import UserError
from vgbench.placement import Placement
from vgbench.summary import OtherRunError, record_failure

if TYPE_CHECKING:
    from vgbench.checkpoint import RunFolder

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    """What a job hands back to Hydra (and to the callbacks that print its line)."""

    run_dir: str
    status: str  # completed, diverged, failed, or skipped (already finished in its folder)
    test_acc: float | None = None
    grad_ratio_step0: float | None = None
    wall_time_s: float | None = None
    stack_size: int = 1
    error: str | None = None


def _result(run_dir: Path, summary: dict[str, Any], skipped: bool = False) -> JobResult:
    return JobResult(
        str(run_dir),
        "skipped" if skipped else summary["status"],
        (summary.get("final") or {}).get("test_acc"),
        (summary.get("first_to_last_grad_ratio") or {}).get("step0"),
        summary.get("wall_time_s"),
        summary.get("stack_size", 1),
    )


def _fail(cfg: DictConfig, run_dir: Path, error: Exception) -> JobResult:
    message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    if not isinstance(error, UserError):  # a bug or a crash keeps its traceback in the job's log
        log.error("%s failed:\n%s", run_dir, "".join(traceback.format_exception(error)))
    line = message.splitlines()[0] if message else type(error).__name__
    if isinstance(error, OtherRunError):  # the folder is another run's: refused, nothing written into it
        return JobResult(str(run_dir), "failed", error=message)
    try:
        record_failure(run_dir, line, OmegaConf.to_container(cfg, resolve=True))
    except OSError as unrecorded:  # a full disk, a folder gone: the sweep's other runs go on all the same
        log.error("%s: the failure could not be recorded in the folder (%s): %s", run_dir, unrecorded.strerror, line)
    return JobResult(str(run_dir), "failed", error=message)


def train_jobs(
    cfgs: Sequence[DictConfig],
    run_dirs: Sequence[Path],
    placement: Placement | None = None,
    max_stack: int | None = None,
    reraise: bool = False,
) -> list[JobResult]:
    """Train the runs one process was given. Each is validated and its folder inspected on its own, so a
    bad one fails alone; the rest train in as few stacks as their shapes and checkpoints allow (at most
    `max_stack` runs each; fp16 runs alone, since its loss scale is shared by a stack). Each group of one
    shape is set up once (device, threads, data: `vgbench.train.prepare`), sized against the memory the
    placement gives it (vgbench.memory), and trained as one or more stacks on that set-up. Each run's
    folder is held (vgbench.run_lock) from before it is inspected until its summary is written; a folder
    another process holds is skipped, and nothing is written into it.

    reraise: a lone run's unexpected error propagates (after its failure is recorded) so its traceback
    reaches the terminal.
    """
    from vgbench.memory import stack_sizes
    from vgbench.run_lock import RunFolderBusy, RunLock
    from vgbench.train import open_run, prepare, train_stack

    placement = placement or Placement()
    results: dict[int, JobResult] = {}
    pending: list[tuple[int, RunFolder]] = []  # (index, folder) of the runs to train
    keys = []
    locks = [RunLock(run_dir) for run_dir in run_dirs]  # each run folder held until its summary is written
    try:
        for index, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs, strict=True)):
            try:
                folder = open_run(cfg, run_dir, locks[index])
            except RunFolderBusy as error:  # another process trains it: write nothing into its folder
                log.warning("%s", error)
                results[index] = JobResult(str(run_dir), "skipped", error=str(error))
                continue
            except Exception as error:
                results[index] = _fail(cfg, run_dir, error)
                if reraise and not isinstance(error, UserError):
                    raise
                continue
            if folder.completed is not None:
                results[index] = _result(run_dir, folder.completed, skipped=True)
                continue
            pending.append((index, folder))
            fp16 = cfg.trainer.amp == "fp16"  # its loss scale is shared by a stack: it trains alone
            keys.append((str(index), 0) if fp16 else (stack_key(folder.config), folder.start_epoch))
        for members in group_into_stacks(keys, max_stack or max(len(pending), 1)):
            group = [pending[member] for member in members]
            trained = 0
            try:
                environment = prepare(cfgs[group[0][0]], placement)
                sizes = stack_sizes(
                    [cfgs[i] for i, _ in group], placement.memory_share, environment.device, environment.data
                )
                for size in sizes:
                    chunk = group[trained : trained + size]
                    summaries = train_stack([f for _, f in chunk], [cfgs[i] for i, _ in chunk], placement, environment)
                    for (index, _), summary in zip(chunk, summaries, strict=True):
                        results[index] = _result(run_dirs[index], summary)
                    trained += size
            except Exception as error:  # the runs of this group not trained yet
                for index, _ in group[trained:]:
                    results[index] = _fail(cfgs[index], run_dirs[index], error)
                if reraise and not isinstance(error, UserError):
                    raise
    finally:
        for lock in locks:
            lock.release()
    return [results[index] for index in range(len(cfgs))]
