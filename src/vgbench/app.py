"""The command line: Hydra composes the config, the job engine (`vgbench.jobs`) runs it.

    vgbench-train activation=sigmoid model.depth=10
    python -m vgbench activation=sigmoid model.depth=10                # the same app
    vgbench-train -m experiment=vanishing hydra/launcher=stacked       # a sweep

This module imports no torch on purpose. In a sweep the launcher process only composes configs and
hands jobs to joblib, submitit or Ray; the job engine, and torch with it, load inside each job. So the
launcher's own start-up, `--cfg job` and `--help` take a fraction of a second.

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
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vgbench.config import CONF_PACKAGE, command_line_error, register_configs, run_identity, task_part
from vgbench.errors import exit_with_error
from vgbench.jobs import JobResult, train_jobs
from vgbench.placement import Placement, available_cores, gpu_slot, threads_per_job
from vgbench.run_lock import held_elsewhere
from vgbench.summary import SUMMARY_FILE, other_run
from vgbench.version import __version__

log = logging.getLogger(__name__)
register_configs()
# Ray's driver folds similar lines of its workers into one ("repeated 3x"): a sweep's per-run lines differ
# in their numbers, so each must show
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def console_level(mode: Any, verbose: Any) -> str:  # resolver arguments
    """The console's log level: a sweep's jobs keep their full log in their folders and show one line
    each (vgbench.callbacks); `hydra.verbose` brings everything back."""
    quiet = str(mode).endswith("MULTIRUN") and verbose in (False, None, "false", "False", "")
    return "WARNING" if quiet else "INFO"


OmegaConf.register_new_resolver("vgbench_console_level", console_level, replace=True)


def refused(root: DictConfig) -> bool:
    """Whether this job's run folder records another run (vgbench.summary.other_run) or another process
    holds it (vgbench.run_lock): then the job is refused or skipped, and neither Hydra's record nor the
    job's log may be written into the folder."""
    run_dir = Path(str(root.hydra.runtime.output_dir))
    if held_elsewhere(run_dir):
        return True
    if not (run_dir / SUMMARY_FILE).is_file():  # a new or unfinished run: no identity to compare (cheap)
        return False
    return other_run(run_dir, run_identity(task_part(root))) is not None


def record_folder(subdir: str, *, _root_: DictConfig) -> str | None:
    """hydra.output_subdir: `.hydra`, or None (Hydra writes no record) in a folder that holds another run."""
    return None if refused(_root_) else subdir


def log_file(path: str, *, _root_: DictConfig) -> str:
    """The job's log file, or the null device in a folder that holds another run."""
    return os.devnull if refused(_root_) else path


OmegaConf.register_new_resolver("vgbench_record_folder", record_folder, replace=True)
OmegaConf.register_new_resolver("vgbench_log_file", log_file, replace=True)


def run_job(cfg: DictConfig) -> JobResult:
    """One Hydra job. Alone: a bad value or file is one line and exit 2, a diverged run exits 1 with
    trainer.fail_on_divergence. In a sweep: the result goes back to Hydra, whatever it is."""

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
    if result.error:  # failed, or skipped because another process holds the folder
        exit_with_error(result.error)
    accuracy = "n/a" if result.test_acc is None else f"{result.test_acc:.4f}"
    print(f"test accuracy: {accuracy} ({result.status}); summary: {run_dir / 'summary.json'}")
    if result.status == "diverged" and cfg.trainer.fail_on_divergence:
        sys.exit(1)
    return result


def _version_flag() -> None:
    if "--version" in sys.argv[1:]:
        print(f"vgbench {__version__}")
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
