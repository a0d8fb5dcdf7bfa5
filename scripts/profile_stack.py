"""Where a stacked training step's time goes: milliseconds per step for K runs of one shape, with the
monitor off and at its default frequency, and the profiler's busiest operators and kernels.

The trainer's own setup and epoch (vgbench.train) on MNIST, 10x128 ReLU at batch 64 (bench_stacked's
shape). On a GPU the question is whether a step is bound by the host launching kernels (device busy
well under the wall time) or by the device; on a CPU, how close the matmuls run to the cores' peak.
On a GPU it also times the bare step replayed from a CUDA graph (`trainer.cuda_graphs=true`,
vgbench.graphs; `graphed_ms_per_step`): what a step costs without the host's launches.

    python scripts/profile_stack.py --device cuda --runs 1,64 [--steps 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.autograd.profiler_util import EventList
from torch.profiler import ProfilerActivity, profile

from vgbench.checkpoint import RunFolder
from vgbench.config import compose_config
from vgbench.placement import Placement
from vgbench.train import Stack, setup, train_epoch

SHAPE = [
    "data=mnist",
    "activation=relu",
    "model.depth=10",
    "model.width=128",
    "logger.tensorboard=false",
    "trainer.checkpoint=false",
    "optimizer.lr=0.01",
]


def make_stack(runs: int, device: str, steps: int, monitor: bool, folder: Path, graphs: bool = False) -> Stack:
    # no held-out split: the training split is exactly `steps` batches, which the per-step figures divide by
    cfgs = [
        compose_config(
            [
                *SHAPE,
                f"trainer.device={device}",
                f"data.limit_train={64 * steps}",
                "data.val_size=0",
                f"monitor.enabled={str(monitor).lower()}",
                f"trainer.cuda_graphs={str(graphs).lower()}",
                f"trainer.seed={seed}",
            ]
        )
        for seed in range(runs)
    ]
    return setup([RunFolder(folder / str(seed)) for seed in range(runs)], cfgs, Placement(progress=False))


def epoch_ms_per_step(stack: Stack, epoch: int, steps: int) -> float:
    sync = torch.cuda.synchronize if stack.device.type == "cuda" else lambda: None
    sync()
    started = time.perf_counter()
    train_epoch(stack, epoch)
    sync()
    return 1000 * (time.perf_counter() - started) / steps


def busiest(events: EventList, attribute: str, steps: int) -> dict[str, float]:
    """The 12 operators or kernels with the most time, in milliseconds per step."""
    ranked = sorted(events, key=lambda event: -getattr(event, attribute))[:12]
    return {event.key: round(getattr(event, attribute) / 1000 / steps, 4) for event in ranked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", default="1,64")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result: dict = {"device": args.device, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        for runs in (int(k) for k in args.runs.split(",")):
            figures, stacks = {}, {}
            for monitor in (False, True):
                folder = Path(tmp) / f"{runs}-{monitor}"
                stacks[monitor] = stack = make_stack(runs, args.device, args.steps, monitor, folder)
                epoch_ms_per_step(stack, 0, args.steps)  # warm-up: allocator, cuBLAS heuristics
                figures[f"ms_per_step_monitor_{'on' if monitor else 'off'}"] = epoch_ms_per_step(stack, 1, args.steps)
            stack = stacks[False]  # the bare step
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
            with profile(activities=activities) as prof:
                wall = epoch_ms_per_step(stack, 2, args.steps)
            events = prof.key_averages()
            device_us = sum(e.self_device_time_total for e in events) if args.device == "cuda" else 0.0
            figures["profiled_ms_per_step"] = wall
            figures["device_busy_ms_per_step"] = device_us / 1000 / args.steps
            figures["top_host_ops"] = busiest(events, "self_cpu_time_total", args.steps)
            if args.device == "cuda":
                figures["top_device_ops"] = busiest(events, "self_device_time_total", args.steps)
                graphed = make_stack(runs, args.device, args.steps, False, Path(tmp) / f"{runs}-graphed", graphs=True)
                epoch_ms_per_step(graphed, 0, args.steps)  # warm-up and capture
                figures["graphed_ms_per_step"] = epoch_ms_per_step(graphed, 1, args.steps)
            result[f"K={runs}"] = figures
            print(f"K={runs}: " + json.dumps(figures, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
