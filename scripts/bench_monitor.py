"""Cost of the gradient monitor: one MNIST epoch of a 5x256 MLP at batch 64 on the CPU, three ways.

  off        monitor.enabled=false: the bare training loop
  default    the monitor at its default frequency, writing TensorBoard events, CSV series, histograms
  every step monitor.every_n_steps=1, everything else as default

The three run back to back, `--repeats` times. This machine's speed drifts by up to half between
repeats, so each repeat's times are compared with that repeat's `off`, and the median of those paired
ratios is the result (the best time of each variant is printed too). The step-time ratio covers the
938 training steps, measurement, hooks, TensorBoard writes and histograms included; the once-an-epoch
extras (the gradient-profile image, the CSV series, the writer's start and close) are printed beside
it as milliseconds per epoch.

    python scripts/bench_monitor.py [--repeats 3] [--activation sigmoid]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vgbench.config import compose_config
from vgbench.data import Data, load_data
from vgbench.model import build_model
from vgbench.monitor import GradientMonitor
from vgbench.recorder import Recorder
from vgbench.train import MixedPrecision, TrainState, build_optimizer, train_epoch


def epoch_seconds(cfg, data: Data, every_n_steps: int | None) -> tuple[float, float]:  # noqa: ANN001
    """(seconds of the training steps, seconds of the once-an-epoch extras)."""
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.activation, data.num_features, data.num_classes)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    monitor = recorder = None
    with tempfile.TemporaryDirectory() as run_dir:
        precision = MixedPrecision("none", torch.device("cpu"))
        state = TrainState()
        setup_started = time.perf_counter()
        if every_n_steps is not None:
            monitor = GradientMonitor(model, every_n_steps, cfg.monitor.histogram_every_n_steps)
            recorder = Recorder(Path(run_dir), len(model.linears()), True, None, None)
        started = time.perf_counter()
        train_epoch(model, data.train, optimizer, F.cross_entropy, precision, cfg, 0, state, monitor, recorder)
        steps_done = time.perf_counter()
        if recorder is not None:
            recorder.epoch_end(state.step, {"epoch": 1}, cfg.optimizer.lr)
            recorder.finish({"depth": cfg.model.depth}, {"hparams/test_acc": 0.0})
        extras = (started - setup_started) + (time.perf_counter() - steps_done)
        return steps_done - started, extras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--every", type=int, default=None, help="measure every N steps (default: the config's)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose_config([f"activation={args.activation}", "model.depth=5", "model.width=256", "data.batch_size=64",
                          "data.val_size=0", "trainer.device=cpu"])  # fmt: skip
    data = load_data(cfg.data, cfg.trainer.seed, torch.device("cpu"))
    every = args.every or cfg.monitor.every_n_steps
    label = f"{'default' if args.every is None else 'monitor'} (every {every} steps)"
    variants = {"off": None, label: every, "every step": 1}
    times: dict[str, list[float]] = {name: [] for name in variants}
    extras: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, every in variants.items():
            steps_seconds, extra_seconds = epoch_seconds(cfg, data, every)
            times[name].append(steps_seconds)
            extras[name].append(extra_seconds)
        print(f"  repeat {repeat + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
    steps = -(-len(data.train) // cfg.data.batch_size)
    print(f"one epoch ({steps} steps), 5x256 {args.activation} MLP, batch 64, CPU, {torch.get_num_threads()} threads:")
    for name, seconds in times.items():
        paired = [t / off for t, off in zip(seconds, times["off"], strict=True)]
        print(f"  {name:28s} best {min(seconds):5.2f} s   step-time ratio vs off: {statistics.median(paired):.3f} "
              f"(median of {', '.join(f'{r:.2f}' for r in paired)})   "
              f"once-an-epoch extras {1000 * min(extras[name]):4.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
