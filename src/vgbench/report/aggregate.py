"""Seed groups in TensorBoard: one aggregate run per group of seeds, beside the runs themselves.

TensorBoard draws every run as its own line and cannot average runs (tensorflow/tensorboard#376), so this
writes the average as runs of their own, as TensorBoard's maintainers suggest: for every group of a sweep
(the runs that only their seeds tell apart, vgbench.report.load), `<sweep>/_mean/<group>/` holds, for every
scalar tag the group's runs logged, at every step they logged it:

  <tag>            the mean over the group's runs
  band_min/<tag>   the least of them
  band_max/<tag>   the greatest of them

with a custom-scalars layout of margin charts (the mean as a line in its min-to-max band, one per group)
and an HParams row per group: its settings, and the mean and standard deviation over seeds of the metrics
each run's own HParams row holds. Runs that diverged or failed are left out of the means and counted
(the Text tab says how many). `tensorboard --logdir <sweep>` then shows the groups at a glance, with the
seeds a click away. Written again from scratch each time (into a new folder, then swapped in).
"""

from __future__ import annotations

import math
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from vgbench.report.load import Group, Sweep, mean_spread
from vgbench.summary import COMPLETED

AGGREGATE_DIR = "_mean"
BAND_PREFIXES = ("band_min", "band_max")
# the tags that get a margin chart: the epoch metrics and the per-layer weight-gradient norm and error
MARGIN_TAGS = re.compile(
    r"^((train|val|test)/(loss|acc)|(grad_norm/weight|delta_norm)/layer_\d+|grad_ratio/first_to_last)$"
)


def _scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> step -> value of every scalar a run's event files hold (the last value written at a step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: {event.step: event.value for event in accumulator.Scalars(tag)} for tag in accumulator.Tags()["scalars"]
    }


def group_series(run_dirs: list[Path]) -> dict[str, dict[int, tuple[float, float, float]]]:
    """tag -> step -> (mean, min, max) over the runs that logged the tag at that step (non-finite values
    left out)."""
    collected: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run_dir in run_dirs:
        for tag, values in _scalars(run_dir).items():
            for step, value in values.items():
                if math.isfinite(value):
                    collected[tag][step].append(value)
    return {
        tag: {step: (sum(v) / len(v), min(v), max(v)) for step, v in sorted(steps.items())}
        for tag, steps in collected.items()
    }


def folder_name(group: Group) -> str:
    """The aggregate run's folder: the group's settings as `key=value,...`, safe for a file system."""
    name = ",".join(f"{k}={v}" for k, v in group.settings.items()) or "all"
    return name.replace("/", "%2F")


def margin_layout(tags: set[str]) -> dict[str, dict[str, list[Any]]]:
    """Custom scalars: one margin chart per tag worth a band (MARGIN_TAGS), its mean line in its band; the
    test metrics first, then the other epoch metrics and ratios, then the layers'."""
    shown = sorted(
        (t for t in tags if MARGIN_TAGS.match(t)), key=lambda t: ("layer_" in t, t.split("/")[0] != "test", t)
    )
    charts = {tag: ["Margin", [tag, f"{BAND_PREFIXES[0]}/{tag}", f"{BAND_PREFIXES[1]}/{tag}"]] for tag in shown}
    return {"seed groups: mean in the min-to-max band": charts}


def write_aggregates(sweep: Sweep, folder: Path) -> list[Path]:
    """The aggregate run of every group with two runs or more (see the module docstring). Returns their
    folders; none when no group has seeds to average."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard.summary import custom_scalars, hparams, text

    from vgbench.event_files import EventFile  # also: the runs' files read back with checksums in C
    from vgbench.tb_writer import hparam_columns, hparam_metrics

    groups = [g for g in sweep.groups if len(g.runs) > 1]
    target, building = folder / AGGREGATE_DIR, folder / f"{AGGREGATE_DIR}.building"
    shutil.rmtree(building, ignore_errors=True)
    written = []
    for group in groups:
        kept = [run for run in group.runs if run.status == COMPLETED]
        series = group_series([folder / run.name for run in kept])
        path = building / folder_name(group)
        events = EventFile(path)
        by_step: dict[int, list[Summary.Value]] = defaultdict(list)  # one event per step: every tag's values
        for tag, steps in series.items():
            for step, (mean, low, high) in steps.items():
                by_step[step] += [
                    Summary.Value(tag=tag, simple_value=mean),
                    Summary.Value(tag=f"{BAND_PREFIXES[0]}/{tag}", simple_value=low),
                    Summary.Value(tag=f"{BAND_PREFIXES[1]}/{tag}", simple_value=high),
                ]
        for step, values in sorted(by_step.items()):
            events.add_summary(Summary(value=values), step)
        events.add_summary(custom_scalars(margin_layout(set(series))), 0)
        left_out = len(group.runs) - len(kept)
        seeds = f"mean of {len(kept)} run(s): {', '.join(r.name for r in kept)}"
        seeds += f"; {left_out} left out (diverged or failed)" if left_out else ""
        events.add_summary(text("seeds", seeds), 0)
        metrics: dict[str, float] = {}
        values = [hparam_metrics(run.summary) for run in kept]
        for tag in dict.fromkeys(tag for run_values in values for tag in run_values):
            mean, spread = mean_spread([run_values.get(tag) for run_values in values]) or (math.nan, math.nan)
            metrics |= {tag: mean, f"{tag}_std": spread}
        for event in hparams(hparam_columns(group.settings) | {"seeds": len(kept)}, metrics):
            events.add_summary(event, 0)
        events.close()
        written.append(target / folder_name(group))
    shutil.rmtree(target, ignore_errors=True)
    if groups:
        building.rename(target)
    return written
