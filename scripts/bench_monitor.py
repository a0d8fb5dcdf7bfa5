"""Cost of the gradient monitor: one MNIST epoch of a 5x256 MLP at batch 64, three ways.

  off        monitor.enabled=false: the bare training loop
  default    the monitor at its default frequency, writing TensorBoard events, CSV series, histograms
  every step monitor.every_n_steps=1, everything else as default

Each is the trainer's own setup and epoch (vgbench.train). The three run back to back, `--repeats`
times. This machine's speed drifts by up to half between repeats, so each repeat's times are compared
with that repeat's `off`, and the median of those paired ratios is the result (the best time of each
variant is printed too). The step-time ratio covers the 938 training steps, measurement, hooks,
TensorBoard writes and histograms included; the once-an-epoch extras (the gradient-profile image, the
CSV series, the writer's close) are printed beside it as milliseconds per epoch. On a GPU it also says
how many steps each variant replayed from CUDA graphs (on by default: the monitor's steps from their own).

    python scripts/bench_monitor.py [--repeats 5] [--activation sigmoid] [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vgbench.checkpoint import RunFolder
from vgbench.config import compose_config
from vgbench.placement import Placement
from vgbench.train import setup, train_epoch


def epoch_seconds(overrides: list[str]) -> tuple[float, float, int]:
    """(seconds of the training steps, seconds of the once-an-epoch extras, steps replayed from a CUDA graph)."""
    cfg = compose_config(overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        stack = setup([RunFolder(Path(run_dir))], [cfg], Placement(progress=False))
        sync = torch.cuda.synchronize if stack.device.type == "cuda" else lambda: None
        sync()
        started = time.perf_counter()
        train_epoch(stack, 0)
        sync()
        steps_done = time.perf_counter()
        run = stack.runs[0]
        run.recorder.epoch_end(stack.step - 1, {"epoch": 1, "train_loss": 0.0}, cfg.optimizer.lr)
        run.recorder.finish({"steps": stack.step, "config": {}})
        return steps_done - started, time.perf_counter() - steps_done, stack.graphed_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--every", type=int, default=None, help="measure every N steps (default: the config's)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    base = [
        f"activation={args.activation}",
        "model.depth=5",
        "model.width=256",
        "data.batch_size=64",
        "data.val_size=0",
        f"trainer.device={args.device}",
        f"trainer.cpu_threads={args.threads}",
        "trainer.checkpoint=false",
    ]
    every = args.every or compose_config(base).monitor.every_n_steps
    label = f"{'default' if args.every is None else 'monitor'} (every {every} steps)"
    variants = {
        "off": ["monitor.enabled=false"],
        label: [f"monitor.every_n_steps={every}"],
        "every step": ["monitor.every_n_steps=1"],
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    extras: dict[str, list[float]] = {name: [] for name in variants}
    graphed: dict[str, int] = {}
    for repeat in range(args.repeats):
        for name, overrides in variants.items():
            steps_seconds, extra_seconds, graphed[name] = epoch_seconds([*base, *overrides])
            times[name].append(steps_seconds)
            extras[name].append(extra_seconds)
        print(f"  repeat {repeat + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
    print(f"one MNIST epoch, 5x256 {args.activation} MLP, batch 64, {args.device}, {args.threads} threads:")
    results = {}
    for name, seconds in times.items():
        paired = [t / off for t, off in zip(seconds, times["off"], strict=True)]
        results[name] = {
            "best_s": min(seconds),
            "paired_ratios": paired,
            "ratio": statistics.median(paired),
            "extras_ms": 1000 * min(extras[name]),
            "graphed_steps": graphed[name],
        }
        print(
            f"  {name:28s} best {min(seconds):5.2f} s   step-time ratio vs off: {statistics.median(paired):.3f} "
            f"(median of {', '.join(f'{r:.2f}' for r in paired)})   "
            f"once-an-epoch extras {1000 * min(extras[name]):4.0f} ms"
            + (f"   {graphed[name]} steps replayed from CUDA graphs" if args.device != "cpu" else "")
        )
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, **results}, indent=2))


if __name__ == "__main__":
    main()
