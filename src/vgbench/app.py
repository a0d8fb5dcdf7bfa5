"""The command line and the job wrapper: Hydra composes the config, the trainer (`vgbench.train`) runs it.

    vgbench-train activation=sigmoid model.depth=10
    python -m vgbench.train activation=sigmoid model.depth=10          # the same app
    vgbench-train -m experiment=vanishing hydra/launcher=stacked       # a sweep

This module imports no torch on purpose. In a sweep the launcher process only composes configs and
hands jobs to joblib, submitit or Ray; the trainer, and torch with it (about 2.5 s here), load inside
each job. So the launcher's own start-up, `--cfg job` and `--help` take a fraction of a second.

A job's faults are the job's: a bad value, an unreadable checkpoint, a folder that holds another run or
missing data is one line (exit 2 alone, `status: failed` in its folder in a sweep, where the other runs
go on); a completed run's summary is never overwritten by a failed attempt. A command line Hydra cannot
compose (an option a group lacks, a key a schema lacks, a value of the wrong type) is one line and exit 2
too, where Hydra prints a block and its search path (`HYDRA_FULL_ERROR=1` brings Hydra's report back).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import vgbench
from vgbench.config import (
    CONF_PACKAGE,
    UserError,
    command_line_error,
    exit_with_error,
    group_into_stacks,
    register_configs,
    stack_key,
)

log = logging.getLogger(__name__)
register_configs()
# Ray's driver folds similar lines of its workers into one ("repeated 3x"): a sweep's per-run lines differ
# in their numbers, so each must show
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def console_level(mode: Any, verbose: Any) -> str:  # noqa: ANN401 - resolver arguments
    """The console's log level: a sweep's jobs keep their full log in their folders and show one line
    each (vgbench.callbacks); `hydra.verbose` brings everything back."""
    quiet = str(mode).endswith("MULTIRUN") and verbose in (False, None, "false", "False", "")
    return "WARNING" if quiet else "INFO"


OmegaConf.register_new_resolver("vgbench_console_level", console_level, replace=True)


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
    return JobResult(str(run_dir), "skipped" if skipped else summary["status"],
                     (summary.get("final") or {}).get("test_acc"),
                     (summary.get("first_to_last_grad_ratio") or {}).get("step0"),
                     summary.get("wall_time_s"), summary.get("stack_size", 1))  # fmt: skip


def _fail(cfg: DictConfig, run_dir: Path, error: Exception) -> JobResult:
    from vgbench.summary import record_failure

    message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    if not isinstance(error, UserError):  # a bug or a crash keeps its traceback in the job's log
        log.error("%s failed:\n%s", run_dir, "".join(traceback.format_exception(error)))
    record_failure(run_dir, message.splitlines()[0] if message else type(error).__name__,
                   OmegaConf.to_container(cfg, resolve=True))  # fmt: skip
    return JobResult(str(run_dir), "failed", error=message)


def train_jobs(cfgs: Sequence[DictConfig], run_dirs: Sequence[Path], placement: Any = None,  # noqa: ANN401
               max_stack: int | None = None, reraise: bool = False) -> list[JobResult]:  # fmt: skip
    """Train the runs one process was given. Each is validated and its folder inspected on its own, so a
    bad one fails alone; the rest train in as few stacks as their shapes and checkpoints allow (at most
    `max_stack` runs each; fp16 runs alone, since its loss scale is shared by a stack), and a stack too
    big for the memory the placement gives it trains as smaller ones, one after another (vgbench.memory).

    placement: a vgbench.train.Placement. reraise: a lone run's unexpected error propagates (after its
    failure is recorded) so its traceback reaches the terminal.
    """
    from vgbench.memory import stack_sizes
    from vgbench.train import Placement, open_run, train_stack

    placement = placement or Placement()
    results: dict[int, JobResult] = {}
    pending: list[tuple[int, Any]] = []  # (index, folder) of the runs to train
    keys = []
    for index, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs, strict=True)):
        try:
            folder = open_run(cfg, run_dir)
        except Exception as error:
            results[index] = _fail(cfg, run_dir, error)
            if reraise and not isinstance(error, UserError):
                raise
            continue
        if folder.completed is not None:
            results[index] = _result(run_dir, folder.completed, skipped=True)
            continue
        pending.append((index, folder))
        keys.append((stack_key(cfg), folder.start_epoch) if cfg.trainer.amp != "fp16" else (str(index), 0))
    for members in group_into_stacks(keys, max_stack or max(len(pending), 1)):
        group = [pending[member] for member in members]
        trained = 0
        try:
            for size in stack_sizes([cfgs[i] for i, _ in group], placement.memory_share, placement.gpu_slot,
                                    placement.threads):  # fmt: skip
                chunk = group[trained : trained + size]
                summaries = train_stack([f for _, f in chunk], [cfgs[i] for i, _ in chunk], placement)
                for (index, _), summary in zip(chunk, summaries, strict=True):
                    results[index] = _result(run_dirs[index], summary)
                trained += size
        except Exception as error:  # the runs of this group not trained yet
            for index, _ in group[trained:]:
                results[index] = _fail(cfgs[index], run_dirs[index], error)
            if reraise and not isinstance(error, UserError):
                raise
    return [results[index] for index in range(len(cfgs))]


def run_job(cfg: DictConfig) -> JobResult:
    """One Hydra job. Alone: a bad value or file is one line and exit 2, a diverged run exits 1 with
    trainer.fail_on_divergence. In a sweep: the result goes back to Hydra, whatever it is."""
    from vgbench.placement import available_cores, gpu_slot, threads_per_job
    from vgbench.train import Placement

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    launcher = OmegaConf.to_container(hydra_cfg.launcher, resolve=True)
    placement = Placement(progress=not in_sweep or console_level(hydra_cfg.mode, hydra_cfg.verbose) == "INFO")
    if in_sweep:
        placement.threads = threads_per_job(launcher, available_cores())
        placement.gpu_slot = gpu_slot(launcher, hydra_cfg.job.num)
    [result] = train_jobs([cfg], [run_dir], placement, reraise=not in_sweep)
    if in_sweep:
        return result
    if result.status == "failed":
        exit_with_error(result.error)
    accuracy = "n/a" if result.test_acc is None else f"{result.test_acc:.4f}"
    print(f"test accuracy: {accuracy} ({result.status}); summary: {run_dir / 'summary.json'}")
    if result.status == "diverged" and cfg.trainer.fail_on_divergence:
        sys.exit(1)
    return result


def _version_flag() -> None:
    if "--version" in sys.argv[1:]:
        print(f"vgbench {vgbench.__version__}")
        sys.exit(0)


@hydra.main(version_base="1.3", config_path=f"pkg://{CONF_PACKAGE}", config_name="config")
def _hydra_main(cfg: DictConfig) -> JobResult:
    return run_job(cfg)


def main() -> None:
    """`vgbench-train`: Hydra's command line, plus --version; a command line Hydra cannot compose stops
    with one line and exit 2 (command_line_error)."""
    _version_flag()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for Hydra's own report
        _hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # so that Hydra raises what it would print
    try:
        _hydra_main()
    except (ConfigCompositionException, OverrideParseException) as error:
        exit_with_error(command_line_error(error))
    finally:
        del os.environ["HYDRA_FULL_ERROR"]


if __name__ == "__main__":
    main()
