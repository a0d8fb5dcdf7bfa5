"""Hydra callbacks of every vgbench sweep: one console line per run as it finishes, and the report at the end.

Registered in conf/config.yaml as `hydra.callbacks.vgbench`. Its `report` switch writes the sweep's report
(vgbench.report) into the sweep folder when the multirun ends; the presets turn it on, and
`hydra.callbacks.vgbench.report=true` turns it on for any sweep. Torch-free: it runs in the launcher
process too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vgbench.files import write_json_atomic

PROGRESS_DIR = ".vgbench"  # inside the sweep folder: the finished-run counter
# sweepers that make the product of the sweep lists: Hydra's basic one and vgbench's (a basic sweeper that
# validates faster, hydra_plugins.vgbench_launchers.sweeper), named as their _target_ ends
BASIC_SWEEPERS = (".BasicSweeper", ".VgbenchSweeper")


def sweep_shape(config: DictConfig) -> tuple[int | None, list[str]]:
    """(how many jobs the basic sweeper makes of this multirun, the keys it sweeps), from the launcher
    process's config: the product of the sweep lists. (None, []) for a range sweep or another sweeper."""
    hydra = config.hydra
    if not str(hydra.sweeper.get("_target_", "")).endswith(BASIC_SWEEPERS):
        return None, []
    params = [f"{k}={v}" for k, v in (hydra.sweeper.get("params") or {}).items()]
    try:
        overrides = OverridesParser.create().parse_overrides([*params, *hydra.overrides.task])
        sizes = {
            o.get_key_element(): len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1 for o in overrides
        }
    except Exception:  # a count is a nicety, never a reason to fail a sweep
        return None, []
    return math.prod(sizes.values()), [key for key, size in sizes.items() if size > 1]


def dry_run(config: DictConfig) -> bool:
    """hydra.sweeper.dry_run=true: the sweep prints its plan and nothing is written."""
    return bool(config.hydra.sweeper.get("dry_run", False))


def _progress_dir(config: DictConfig) -> Path:
    return Path(str(config.hydra.sweep.dir)) / PROGRESS_DIR


def _count_finished(config: DictConfig, run: str) -> tuple[int, dict[str, Any]]:
    """Add this run to the sweep's list of finished runs (under a lock: jobs finish in many processes);
    returns how many have finished and what on_multirun_start wrote of the sweep."""
    folder = _progress_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / "lock")):
        with (folder / "finished.txt").open("a") as f:
            f.write(run + "\n")
        done = len((folder / "finished.txt").read_text().splitlines())
    shape = folder / "sweep.json"
    return done, json.loads(shape.read_text()) if shape.exists() else {}


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def job_line(result: Any, overrides: str, done: int, total: int | None) -> str:
    """'[ 3/16] activation=relu,model.depth=10  completed  acc 0.9612  first/last 8.2e-01  41.3 s'."""
    width = len(str(total or done))
    count = f"[{done:>{width}}/{total}]" if total else f"[{done}]"
    if getattr(result, "status", None) is None:  # the job raised past vgbench's own wrapper
        return f"{count} {overrides}  failed  {result}"
    if result.error:  # failed, or skipped: another process holds the folder
        return f"{count} {overrides}  {result.status}  {result.error}"
    stack = f"  (stack of {result.stack_size})" if result.stack_size > 1 else ""
    numbers = (
        f"acc {_number(result.test_acc, '.4f')}  first/last {_number(result.grad_ratio_step0, '.1e')}  "
        f"{_number(result.wall_time_s, '.1f')} s"
    )
    return f"{count} {overrides}  {result.status}  {numbers}{stack}"


class SweepCallback(Callback):
    def __init__(self, report: bool = False) -> None:
        self.report = report

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if dry_run(config):
            return
        folder = _progress_dir(config)
        (folder / "finished.txt").unlink(missing_ok=True)  # a sweep run again into its folder counts afresh
        total, swept = sweep_shape(config)
        write_json_atomic(folder / "sweep.json", {"total": total, "swept": swept})

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if str(config.hydra.mode) != "RunMode.MULTIRUN":
            return
        # a job that raised past vgbench's wrapper holds its exception (return_value would re-raise it)
        result = job_return.return_value if job_return.status == JobStatus.COMPLETED else job_return._return_value
        done, sweep = _count_finished(config, str(config.hydra.job.override_dirname) or str(config.hydra.job.num))
        swept = set(sweep.get("swept", []))
        shown = [o for o in config.hydra.overrides.task if o.split("=", 1)[0] in swept] or list(
            config.hydra.overrides.task
        )
        print(job_line(result, ",".join(shown), done, sweep.get("total")), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.report or dry_run(config):
            return
        from vgbench.report import print_report, write_report

        folder = Path(str(config.hydra.sweep.dir))
        try:
            report = write_report(folder)
        except FileNotFoundError as error:
            print(f"no report: {error}")
            return
        print_report(report, folder)
