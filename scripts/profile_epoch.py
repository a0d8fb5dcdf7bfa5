"""Where a stacked epoch's time goes: the trainer's own epochs (vgbench.train.fit) of K runs, split into
their phases, each timed with the device synchronised around it.

bench_stacked's shape (MNIST, 10x128 ReLU at batch 64, the monitor every 100 steps, a checkpoint per run,
no TensorBoard). The first epoch (warm-up, the CUDA graph's capture) is left out and the second runs
under cProfile; the phases of the others are summed and divided by their number:
  replayed     steps replayed from the CUDA graph      op_by_op   full-batch steps launched op by op
  measured     the monitor's steps launched op by op   last_batch the epoch's smaller last batch
  measured_replayed  the monitor's steps replayed from their own graph, with their one host transfer
  log_events   the host reads of the running sums      held_out   the held-out evaluation
  to_host      the checkpoint's tensors off the device series     each run's steps.csv and layers.csv
  checkpoints  each run's checkpoint file              other      the rest: orders, the loop's Python
Then the host's busiest functions (cProfile of an epoch without the synchronisations: cumulative, own time).

    python scripts/profile_epoch.py --device cuda --runs 64 [--epochs 3] [--json out.json] [OVERRIDE ...]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from vgbench import train
from vgbench.checkpoint import RunFolder
from vgbench.config import compose_config
from vgbench.placement import Placement
from vgbench.recorder import Recorder
from vgbench.train import fit, setup

SHAPE = [
    "data=mnist",
    "activation=relu",
    "model.depth=10",
    "model.width=128",
    "monitor.every_n_steps=100",
    "logger.tensorboard=false",
    "optimizer.lr=0.01",
]


class PhaseClock:
    """Seconds per phase, each timed between two synchronisations of the device. A phase inside another
    (the held-out evaluation's host read, say) counts as the outer one."""

    def __init__(self, device: torch.device) -> None:
        self.sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
        self.seconds: dict[str, float] = defaultdict(float)
        self.depth = 0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.depth += 1
        if self.depth > 1:
            yield
            self.depth -= 1
            return
        self.sync()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] += time.perf_counter() - started
            self.depth -= 1

    def wrap(self, owner: object, attribute: str, name: Callable[..., str] | str) -> None:
        """Time every call of owner.attribute under `name` (or name(*args, **kwargs))."""
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            with self.phase(name(*args, **kwargs) if callable(name) else name):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)


def graph_phase(stack: train.Stack, kind: str, *rest: object) -> str:
    return "replayed" if kind == "plain" else "measured_replayed"


def step_phase(stack: train.Stack, idx: torch.Tensor, measured_in_epoch: int | None = None) -> str:
    if measured_in_epoch is not None:
        return "measured"
    return "op_by_op" if idx.shape[1] == stack.shape.data.batch_size else "last_batch"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="at least 3: a warm-up, one profiled, the rest timed")
    parser.add_argument("--limit-train", type=int, default=None, help="data.limit_train (a quick try on a CPU)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="more overrides, after the shape's")
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error(f"--epochs={args.epochs}: at least 3 (a warm-up, one under cProfile, then the timed ones)")
    overrides = [*([f"data.limit_train={args.limit_train}"] if args.limit_train else []), *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = [
            compose_config(
                [
                    *SHAPE,
                    *overrides,
                    f"trainer.device={args.device}",
                    f"trainer.epochs={args.epochs}",
                    f"trainer.seed={seed}",
                ]
            )
            for seed in range(args.runs)
        ]
        stack = setup([RunFolder(Path(tmp) / str(seed)) for seed in range(args.runs)], cfgs, Placement(progress=False))
        # the warm-up epoch, untimed, then the profile of one epoch without synchronisations
        stack.shape.trainer.epochs = 1
        fit(stack)
        stack.shape.trainer.epochs = 2
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.runcall(fit, stack)
        profiled_seconds = time.perf_counter() - started
        clock = PhaseClock(stack.device)
        clock.wrap(train, "graphed_step", graph_phase)  # and a new graph's warm-up and capture (none here)
        clock.wrap(train, "train_step", step_phase)
        clock.wrap(train, "evaluate", "held_out")
        clock.wrap(train, "run_slices", "to_host")
        clock.wrap(stack.optimizer, "run_states", "to_host")
        clock.wrap(train, "save_checkpoint", "checkpoints")
        clock.wrap(Recorder, "epoch_end", "series")
        clock.wrap(torch.Tensor, "tolist", "log_events")
        timed_epochs = args.epochs - 2
        stack.shape.trainer.epochs = args.epochs
        started = time.perf_counter()
        fit(stack)
        clock.sync()
        total = time.perf_counter() - started
    seconds = {name: value / timed_epochs for name, value in clock.seconds.items()}
    seconds["other"] = total / timed_epochs - sum(seconds.values())
    text = io.StringIO()
    for order in ("cumulative", "tottime"):
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(25)
    result = {
        "device": str(stack.device),
        "runs": args.runs,
        "timed_epochs": timed_epochs,
        "epoch_seconds": total / timed_epochs,
        "profiled_epoch_seconds": profiled_seconds,
        "graphed_steps": stack.graphed_steps,
        "phases_seconds_per_epoch": seconds,
    }
    print(json.dumps(result, indent=1))
    print(text.getvalue())
    if args.json:
        args.json.write_text(json.dumps(result | {"cprofile": text.getvalue()}, indent=2))


if __name__ == "__main__":
    main()
