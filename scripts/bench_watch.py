"""Cost of vgbench.watch on a user's own model: one epoch of the CNN example (examples/cnn_sigmoid_vs_relu.py,
ReLU, 6 convolutions) on MNIST at batch 64, three ways, each a plain PyTorch loop:

  off        no watch: the bare loop
  default    vgbench.watch(every_n_steps=100), writing its series and TensorBoard events
  every step vgbench.watch(every_n_steps=1)

The three run back to back, `--repeats` times; each repeat's times are divided by that repeat's `off` and the
median of those paired ratios is the result (this machine's speed drifts between repeats). The watched
times include closing the watch (its files).

    python scripts/bench_watch.py [--repeats 5] [--limit 60000] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import vgbench

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from cnn_sigmoid_vs_relu import cnn  # noqa: E402 - the examples folder, put on the path above
from common import batches, images  # noqa: E402


def epoch_seconds(data: tuple[torch.Tensor, torch.Tensor], every: int | None, depth: int) -> float:
    torch.manual_seed(0)
    model = cnn("relu", depth)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    steps = len(data[0]) // 64
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        watch = vgbench.watch(model, out_dir=out, every_n_steps=every) if every else None
        for step, (x, y) in zip(range(steps), batches(*data, 64, 0), strict=False):
            with watch.step(step) if watch else contextlib.nullcontext({}) as extra:
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if watch:
                    extra["train/batch_loss"] = loss
        if watch:
            watch.close()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=60_000, help="training examples in the epoch (all of MNIST)")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data, _ = images(synthetic=False, limit=args.limit)
    variants = {"off": None, "default (every 100 steps)": 100, "every step": 1}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, every in variants.items():
            times[name].append(epoch_seconds(data, every, args.depth))
        print(f"  repeat {repeat + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
    print(
        f"one epoch of {args.limit} MNIST images, CNN of {args.depth} ReLU convolutions, batch 64, "
        f"{args.threads} threads:"
    )
    for name, seconds in times.items():
        paired = [t / off for t, off in zip(seconds, times["off"], strict=True)]
        print(
            f"  {name}: best {min(seconds):.2f} s, median paired ratio {statistics.median(paired):.3f} "
            f"(pairs {', '.join(f'{r:.2f}' for r in paired)})"
        )


if __name__ == "__main__":
    main()
