"""Reading a sweep folder: its runs, what the sweep varied, and the groups that only seeds tell apart.

The swept keys are the keys of the runs' overrides (`.hydra/overrides.yaml`) whose values differ between
runs; runs made outside a sweep (or merged from several) fall back to the keys whose resolved configs
differ. A group is one combination of every swept key's value but the seed: only seeds are averaged.
"""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import yaml

from vgbench.config import ACTS_ONLY_WITH, PLACEMENT_KEYS, flat_items
from vgbench.flow import classify
from vgbench.summary import FAILED, SUMMARY_FILE, Summary, read_summary

SEED_KEYS = ("trainer.seed", "seed")  # vgbench's runs; a watched model's config (vgbench.watch)
NOT_SWEPT = (*PLACEMENT_KEYS, "experiment", "hydra.callbacks.vgbench.report")
# where a numeric key makes the best x axis, first to last; any other numeric key after these
AXIS_PREFERENCE = (
    "model.sigma_w2",
    "model.depth",
    "optimizer.lr",
    "model.init_std",
    "model.width",
    "optimizer.weight_decay",
    "data.batch_size",
    "optimizer.momentum",
    "model.bias_std",
)
# the settings the overview states when they are the same for every run
OVERVIEW_KEYS = (
    "activation",
    "model.depth",
    "model.width",
    "model.init",
    "model.init_std",
    "model.sigma_w2",
    "model.bias_std",
    "model.norm",
    "optimizer",
    "optimizer.lr",
    "loss",
    "data",
    "data.batch_size",
    "trainer.epochs",
)


def number(text: Any) -> Any:
    """'10' -> 10, '1e-3' -> 0.001, anything else as it is."""
    if not isinstance(text, str):
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: number(v) if v != "" else None for k, v in row.items()} for row in csv.DictReader(f)]


UNREADABLE = (OSError, UnicodeDecodeError, ValueError, RecursionError, yaml.YAMLError, csv.Error)


@dataclass(eq=False)  # a run is itself: compared by identity
class Run:
    name: str  # the run folder, relative to the sweep folder
    summary: Summary
    overrides: list[str]
    layers: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return self.summary.get("config", {})

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    @property
    def override_map(self) -> dict[str, str]:
        return dict(o.lstrip("+~").split("=", 1) for o in self.overrides if "=" in o and not o.startswith("hydra"))

    def setting(self, key: str) -> Any:
        """This run's value of a swept key: its override, else its config (a group key: its name)."""
        if key in self.override_map:
            return number(self.override_map[key])
        node: Any = self.config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node.get("name") if isinstance(node, dict) else node

    def label(self, keys: list[str]) -> str:
        """The run by its swept settings ('lr=10, seed=0'); its folder where none differ."""
        return ", ".join(f"{k.split('.')[-1]}={self.setting(k)}" for k in keys) or self.name

    def final(self, key: str) -> float | None:
        value = (self.summary.get("final") or {}).get(key)
        return float(value) if value is not None else None

    def ratio(self, which: str = "step0", kind: str = "grad") -> float | None:
        value = (self.summary.get(f"first_to_last_{kind}_ratio") or {}).get(which)
        return float(value) if value is not None else None

    def profile(self, which: str, metric: str) -> list[float]:
        return ((self.summary.get("profile") or {}).get(which) or {}).get("layers", {}).get(metric, [])

    def steps_to(self, target: str) -> int | None:
        """The step at which the run first met `target` (vgbench.targets); None where it never did."""
        reached = (self.summary.get("targets") or {}).get(target)
        return int(reached["step"]) if reached else None

    @property
    def monitored(self) -> bool:
        return bool(self.summary.get("profile"))

    @property
    def flow(self) -> dict[str, Any] | None:
        return self.summary.get("flow") or classify((self.summary.get("profile") or {}).get("step0"))

    @property
    def batch_losses(self) -> list[tuple[int, float]]:
        return [(int(s["step"]), s["train/batch_loss"]) for s in self.steps if s.get("train/batch_loss") is not None]


def load_runs(folder: Path) -> list[Run]:
    """Every run under `folder` (or `folder` itself, for a single run) that has a summary.json."""
    runs = []
    for path in sorted(folder.rglob(SUMMARY_FILE)):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # .submitit and other tool folders
        run_dir = path.parent
        name = str(run_dir.relative_to(folder)) if run_dir != folder else "."
        try:
            runs.append(read_run(run_dir, name, path))
        except UNREADABLE as error:  # one damaged run is listed as such; the report covers the others
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            runs.append(Run(name=name, summary={"status": FAILED, "error": f"unreadable: {reason}"}, overrides=[]))
    return runs


def read_run(run_dir: Path, name: str, summary_path: Path) -> Run:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
    if not isinstance(overrides, list):
        raise ValueError(f"{overrides_file} is not a list of overrides")
    return Run(
        name=name,
        summary=read_summary(summary_path),
        overrides=[str(o) for o in overrides],
        # a watched model's activation rows are not layers (vgbench.series.watched_rows)
        layers=[row for row in _read_csv(run_dir / "layers.csv") if row.get("kind") != "activation"],
        steps=_read_csv(run_dir / "steps.csv"),
    )


def _order(value: Any) -> tuple[bool, Any]:
    """Numbers in order, then anything else by its text."""
    return (True, str(value)) if isinstance(value, bool) or not isinstance(value, (int, float)) else (False, value)


def swept_keys(runs: list[Run]) -> list[str]:
    """The keys whose values differ between runs, in the order the overrides name them. An unreadable run
    (no config) says nothing about them."""
    runs = [run for run in runs if run.config or run.overrides]
    if any(run.overrides for run in runs):
        keys = list(dict.fromkeys(k for run in runs for k in run.override_map))
        values = {key: {str(run.setting(key)) for run in runs} for key in keys}
    else:
        flats = [flat_items(run.config) for run in runs]
        keys = sorted({k for flat in flats for k in flat})
        values = {key: {str(flat.get(key)) for flat in flats} for key in keys}
    return [k for k in keys if len(values[k]) > 1 and k not in NOT_SWEPT]


@dataclass
class Group:
    settings: dict[str, Any]  # every swept key but the seed -> its value
    runs: list[Run]  # its seeds, failed runs left out

    def steps_to(self, target: str) -> tuple[list[int], int]:
        """(the step at which each seed that met `target` first met it, how many seeds recorded it): the
        rest of those never met it; runs without the target (another config, a watched model) left out."""
        recorded = [run for run in self.runs if target in (run.summary.get("targets") or {})]
        return [step for run in recorded if (step := run.steps_to(target)) is not None], len(recorded)

    def label(self, keys: list[str] | None = None) -> str:
        shown = {k: v for k, v in self.settings.items() if keys is None or k in keys}
        return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in shown.items()) or "all runs"


def log_mean_spread(values: list[float | None]) -> tuple[float, float, float] | None:
    """Geometric mean, min and max of the positive finite values (ratios span orders of magnitude)."""
    good = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not good:
        return None
    return 10 ** (sum(math.log10(v) for v in good) / len(good)), min(good), max(good)


def variance_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float] | None:
    """The sample variance of the finite values and its `level` sampling interval for Gaussian draws:
    (k s^2 / chi2_high, k s^2 / chi2_low), k = n - 1, the chi-square quantiles by Wilson and Hilferty's cube
    (within 1% of the exact ones for k >= 10). None for fewer than 3 values."""
    good = [v for v in values if math.isfinite(v)]
    if len(good) < 3:
        return None
    k = len(good) - 1
    mean = sum(good) / len(good)
    variance = sum((v - mean) ** 2 for v in good) / k
    z = NormalDist().inv_cdf(0.5 + level / 2)

    def quantile(sign: int) -> float:
        return k * (1 - 2 / (9 * k) + sign * z * math.sqrt(2 / (9 * k))) ** 3

    return variance, k * variance / quantile(1), k * variance / max(quantile(-1), 1e-12)


def mean_spread(values: list[float | None]) -> tuple[float, float] | None:
    """Mean and standard deviation (population) of the finite values."""
    good = [v for v in values if v is not None and math.isfinite(v)]
    if not good:
        return None
    mean = sum(good) / len(good)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in good) / len(good))


@dataclass
class Sweep:
    folder: Path
    runs: list[Run]
    swept: list[str]  # what varied, the seed excluded
    seeds: list[Any]  # the seeds, when they varied
    groups: list[Group]
    x_key: str | None  # the axis of the figures: a numeric swept key where there is one
    line_keys: list[str]  # the rest: one line per combination
    fixed: dict[str, Any]  # overview keys with one value across the runs

    @property
    def numeric_x(self) -> bool:
        return self.x_key is not None and all(isinstance(g.settings[self.x_key], (int, float)) for g in self.groups)

    def x_values(self) -> list[Any]:
        values = list(dict.fromkeys(g.settings[self.x_key] for g in self.groups)) if self.x_key else [None]
        return sorted(values) if self.numeric_x else values

    def lines(self) -> list[tuple[dict[str, Any], list[Group]]]:
        """(the line's settings, its groups along x) for each combination of the line keys."""
        lines: dict[tuple, list[Group]] = {}
        for group in self.groups:
            lines.setdefault(tuple(group.settings[k] for k in self.line_keys), []).append(group)
        order = self.x_values()
        return [
            (
                dict(zip(self.line_keys, key, strict=True)),
                sorted(groups, key=lambda g: order.index(g.settings[self.x_key]) if self.x_key else 0),
            )
            for key, groups in lines.items()
        ]

    @property
    def targets(self) -> list[str]:
        """The targets the runs recorded (trainer.targets), in the order they list them."""
        return list(dict.fromkeys(t for run in self.runs for t in run.summary.get("targets") or {}))

    def line_label(self, settings: dict[str, Any]) -> str:
        return (
            ", ".join(
                f"{v}" if k in ("activation", "activation.name") else f"{k.split('.')[-1]}={v}"
                for k, v in settings.items()
            )
            or "runs"
        )


def _axis(keys: list[str], groups: list[Group]) -> str | None:
    """A numeric key (AXIS_PREFERENCE first); with none, the categorical key with the most values."""
    numeric = [
        k
        for k in keys
        if all(isinstance(g.settings[k], (int, float)) and not isinstance(g.settings[k], bool) for g in groups)
    ]
    ranked = [k for k in AXIS_PREFERENCE if k in numeric] + [k for k in numeric if k not in AXIS_PREFERENCE]
    if ranked:
        return ranked[0]
    return max(keys, key=lambda k: len({str(g.settings[k]) for g in groups})) if keys else None


def read_sweep(folder: Path) -> Sweep:
    runs = load_runs(folder)
    if not runs:
        raise FileNotFoundError(f"no summary.json under {folder}: is it a run or sweep folder of vgbench?")
    keys = swept_keys(runs)
    seed_key = next((k for k in SEED_KEYS if k in keys), None)
    seeds = sorted({run.setting(seed_key) for run in runs} - {None}, key=_order) if seed_key else []
    group_keys = [k for k in keys if k != seed_key]
    grouped: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.status != FAILED:
            grouped.setdefault(tuple(str(run.setting(k)) for k in group_keys), []).append(run)
    groups = [Group({k: runs_[0].setting(k) for k in group_keys}, runs_) for runs_ in grouped.values()]
    listed = sweep_lists(folder) or {}  # the sweep's own order of its values, where it has one

    def position(group: Group) -> tuple:
        order = []
        for key in group_keys:
            values = [number(v) for v in listed.get(key, [])]
            value = group.settings[key]
            order.append(values.index(value) if value in values else len(values))
        return tuple(order)

    groups.sort(key=position)
    x_key = _axis(group_keys, groups)
    line_keys = [k for k in group_keys if k != x_key]
    fixed = {}
    for key in OVERVIEW_KEYS:
        values = {str(run.setting(key)) for run in runs}
        if key not in keys and len(values) == 1 and values != {"None"} and acts(key, runs):
            fixed[key] = runs[0].setting(key)
    return Sweep(folder, runs, keys, seeds, groups, x_key, line_keys, fixed)


def acts(key: str, runs: list[Run]) -> bool:
    """Whether a knob acts on some of these runs (config.ACTS_ONLY_WITH: init_std only with init=normal)."""
    if key not in ACTS_ONLY_WITH:
        return True
    governing, values = ACTS_ONLY_WITH[key]
    return any(str(run.setting(governing)) in values for run in runs)


def sweep_lists(folder: Path) -> dict[str, list[str]] | None:
    """The sweep's comma lists, key -> values in the order it listed them, from Hydra's multirun.yaml."""
    path = folder / "multirun.yaml"
    if not path.exists():
        return None
    hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra", {})
    choices: dict[str, list[str]] = {}
    for key, value in ((hydra.get("sweeper") or {}).get("params") or {}).items():
        choices[key] = [v.strip() for v in str(value).split(",")]
    for override in (hydra.get("overrides") or {}).get("task", []):
        key, _, value = override.partition("=")
        if "," in value and not value.startswith(("[", "{")):
            choices[key] = [v.strip() for v in value.split(",")]
    return choices


def expected_overrides(folder: Path) -> list[frozenset[str]] | None:
    """The runs the sweep asked for: the cross product of its comma lists."""
    choices = sweep_lists(folder)
    if choices is None or any("(" in v for values in choices.values() for v in values):
        return None  # no multirun.yaml, or range() or choice() sweeps: not enumerated here
    return [
        frozenset(f"{k}={v}" for k, v in zip(choices, combo, strict=True))
        for combo in itertools.product(*choices.values())
    ]


def _normalised(overrides: frozenset[str] | list[str]) -> set[tuple[str, Any]]:
    """key=value overrides as (key, value) with numbers and booleans parsed: Hydra writes a job's `1e-4` as
    `0.0001` and its `true` as `True`."""
    return {
        (k, v.lower() == "true" if v.lower() in ("true", "false") else number(v))
        for k, _, v in (o.partition("=") for o in overrides)
    }


def missing_runs(folder: Path, runs: list[Run]) -> list[str]:
    expected = expected_overrides(folder)
    if expected is None:
        return []
    have = [_normalised(run.overrides) for run in runs]
    return [",".join(sorted(combo)) for combo in expected if not any(_normalised(combo) <= h for h in have)]
