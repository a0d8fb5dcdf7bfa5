"""Training targets: conditions on a run's metrics, such as `train_acc:0.9` (accuracy at least 0.9) or
`val_loss:0.1` (loss at most 0.1), the first step, epoch and second at which each held, and the one that ends
a run (`trainer.stop_at`).

A condition is `<metric>:<number>`, at least the number for an accuracy and at most for a loss, or with an
explicit operator, `<metric><op><number>` with op one of >=, <=, >, < (Hydra's command line needs that form
quoted: `'trainer.stop_at="train_loss<0.05"'`). Summaries name each condition written out:
`train_acc>=0.9`. Where each metric is read decides the resolution of "steps to target" (a target
reached between two checks is recorded at the later one):

- train_loss, train_acc: the mean over the steps since the previous check, checked at every log event
  (each `trainer.log_every_n_steps` steps and at each epoch's last step), where the trainer reads its
  running sums anyway: no extra host sync.
- val_loss, val_acc: the held-out split, checked at each evaluation (every `trainer.eval_every` epochs and
  the last). With data.val_size=0 the held-out split is the test split, and these are test_loss, test_acc.

Torch-free: the config's validation and the report read it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vgbench.errors import ConfigError

TRAIN_METRICS = ("train_loss", "train_acc")
HELD_OUT_METRICS = ("loss", "acc")  # after the held-out split's name: val_acc, or test_acc with data.val_size=0
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*([A-Za-z_]+)\s*(>=|<=|>|<|:)\s*(\S+)\s*$")

Reached = dict[str, float | int]  # {"step", "epoch", "seconds", "value"}: where a target first held


@dataclass(frozen=True)
class Target:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"

    def holds(self, metrics: Mapping[str, float]) -> bool:
        value = metrics.get(self.metric)
        return value is not None and math.isfinite(value) and OPERATORS[self.op](value, self.threshold)


def metric_names(held_out: str) -> tuple[str, ...]:
    """The metrics a target can name, `held_out` the held-out split's name (val, or test)."""
    return (*TRAIN_METRICS, *(f"{held_out}_{m}" for m in HELD_OUT_METRICS))


def parse_target(key: str, text: Any, held_out: str) -> Target:
    """`text` as a Target; a ConfigError naming `key`, the value and the valid forms where it is not one."""
    valid = ", ".join(metric_names(held_out))
    match = _CONDITION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(
            f"{key}={text!r} is not a condition; write <metric>:<number> (e.g. train_acc:0.9, val_loss:0.1) "
            f"or <metric><op><number> with op one of {', '.join(OPERATORS)}; metric one of {valid}"
        )
    metric, op, number = match.groups()
    if metric not in metric_names(held_out):
        other = "val" if held_out == "test" else "test"
        why = ""
        if metric.startswith(f"{other}_") and metric.removeprefix(f"{other}_") in HELD_OUT_METRICS:
            why = (
                " (data.val_size=0 evaluates on the test split during training)"
                if held_out == "test"
                else " (the test split is evaluated once, after training; set data.val_size=0 to evaluate on it)"
            )
        raise ConfigError(f"{key}={text!r}: {metric!r} is not a metric a target can use{why}; choose one of {valid}")
    try:
        threshold = float(number)
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        raise ConfigError(f"{key}={text!r}: {number!r} is not a finite number")
    if op == ":":  # an accuracy is reached from below, a loss from above
        op = ">=" if metric.endswith("_acc") else "<="
    return Target(metric, op, threshold)


def held_out_name(val_size: Any) -> str:
    """The split evaluated during training: the validation split, or the test split where data.val_size=0."""
    return "test" if val_size == 0 else "val"


def run_targets(targets: Sequence[Any] | None, stop_at: Any, val_size: Any) -> tuple[list[Target], Target | None]:
    """`trainer.targets` and `trainer.stop_at` parsed; the stop condition is recorded as a target too."""
    held_out = held_out_name(val_size)
    parsed = [parse_target("trainer.targets", text, held_out) for text in targets or []]
    stop = parse_target("trainer.stop_at", stop_at, held_out) if stop_at is not None else None
    return list(dict.fromkeys([*parsed, *([stop] if stop else [])])), stop


@dataclass
class TargetTracker:
    """One run's targets: when each first held. `update` is called at each check with the metrics read
    there; a reached target keeps its first step (a checkpoint carries `reached` across a resume)."""

    targets: list[Target]
    stop_at: Target | None = None
    reached: dict[str, Reached | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reached = {str(t): self.reached.get(str(t)) for t in self.targets}

    def update(self, metrics: Mapping[str, float], step: int, epoch: int, seconds: float) -> bool:
        """Record the targets that hold for the first time; True when the stop condition holds now."""
        for target in self.targets:
            if self.reached[str(target)] is None and target.holds(metrics):
                value = float(metrics[target.metric])
                self.reached[str(target)] = {"step": step, "epoch": epoch, "seconds": seconds, "value": value}
        return self.stop_at is not None and self.stop_at.holds(metrics)
