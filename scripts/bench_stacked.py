"""Stacked sweeps against one process per run, side by side, through the real app.

  --mode sweep  (the 2-core target) a 16-run MNIST sweep, 4 seeds x 4 learning rates of a 10x128 ReLU
                MLP, one epoch: hydra/launcher=stacked (one stack of 16) against hydra/launcher=parallel
                (one process per run, one per core), alternating; the best wall time of each is compared.
                Target: stacked / parallel <= 0.6.
  --mode gpu    K = 1, 8, 64 runs of one shape on one device: one stack of K against K processes through
                the parallel launcher (its default: at most jobs_per_gpu processes per GPU). Throughput in
                run-epochs per minute; target at K = 64: stacked >= 10x. `--epochs` sets the runs' length:
                the stack's start-up is paid once, the processes' once per job. Given two lengths
                (`--epochs 1,3`), it also takes their difference: the throughput of one more epoch, the
                start-ups left out (the steady state, what a longer sweep gets); that ratio is printed last.
                Both sides replay their steps from CUDA graphs (trainer.cuda_graphs, on by default);
                `--no-graphs` launches them op by op.
  --mode scale  K = 256, 512, 1024 runs (`--runs`) of the 10x128 ReLU MLP at batch 64 on one GPU, as one stack
                each (hydra.launcher.max_stack=K), of 1 and 2 epochs: the wall time of one epoch, start-up
                included (target at K = 1024: < 10 s), and from the difference the steady epoch, in useful
                TFLOP/s (the matrix products an MLP step must compute, `training_flops`) against the device's
                fp32 peak without tensor cores. The steady epoch holds its end too (every run's checkpoint,
                tables and evaluation), so each K's training steps are also timed alone, in this process
                (`step_seconds`: replayed from the CUDA graph, no monitor, no files): the steady state of
                the device's work (target at K = 512: >= half of the peak). No process-per-run side.
  --mode demo   `make demo`'s sweep (the vanishing preset: 3 seeds, one epoch, stacked, report) against the
                demo before stacking (one seed, three epochs, the parallel launcher, report). Target: <= 1.3x.

    python scripts/bench_stacked.py [--mode sweep] [--repeats 2] [--json out.json]

The ratio is printed last.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = [sys.executable, "-m", "vgbench.app"]
SHAPE = ["data=mnist", "activation=relu", "model.depth=10", "model.width=128", "monitor.every_n_steps=100"]
# fp32 without tensor cores, TFLOP/s, from NVIDIA's data sheets (H100: the SXM part; the PCIe one has 51)
FP32_PEAK_TFLOPS = {"H200": 67.0, "H100": 67.0, "A100": 19.5, "L40S": 91.6}
MNIST_TRAIN_STEPS = 860  # 55000 examples (60000 less the 5000 held out) at batch 64, the last batch partial


def training_flops(sizes: list[int], batch: int) -> int:
    """The floating-point operations of one training step of one run of an MLP with layer sizes `sizes`
    (input, hidden..., classes) at `batch`: each layer's forward product (2 B n_in n_out), its weight
    gradient (the same), and its input gradient (the same, for every layer but the first: the data needs
    none). Element-wise work (activations, the loss, the optimizer) is left out: it is not what a GPU's peak
    is quoted for."""
    products = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
    return 2 * batch * (2 * sum(products) + sum(products[1:]))


def step_seconds(runs: int, device: str, steps: int, overrides: list[str] = SHAPE) -> float:
    """The seconds of one training step of a K-run stack of `overrides`' shape, alone: `steps` full batches
    (replayed from the stack's CUDA graph where it has one, else op by op) after a warm-up and the capture,
    timed between two synchronisations of the device; the monitor off, nothing written."""
    import torch

    from vgbench.checkpoint import RunFolder
    from vgbench.config import compose_config
    from vgbench.placement import Placement
    from vgbench.train import graphed_step, setup, train_step

    shape = compose_config([*overrides, f"trainer.device={device}", "monitor.enabled=false"])
    cfgs = []
    for seed in range(runs):  # one composition, K copies: Hydra composes a config in tens of milliseconds
        cfg = copy.deepcopy(shape)
        cfg.trainer.seed = seed
        cfgs.append(cfg)
    with tempfile.TemporaryDirectory() as folder:
        stack = setup([RunFolder(Path(folder) / str(k)) for k in range(runs)], cfgs, Placement(progress=False))
        idx = torch.arange(stack.shape.data.batch_size, device=stack.device).expand(runs, -1)

        def step() -> None:
            if "plain" in stack.graphs:
                graphed_step(stack, "plain", idx)
            else:
                train_step(stack, idx)

        sync = torch.cuda.synchronize if stack.device.type == "cuda" else lambda: None
        for _ in range(5):  # the warm-up steps and the capture
            step()
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        return (time.perf_counter() - started) / steps


def sweep_seconds(args: list[str], expected_runs: int) -> float:
    with tempfile.TemporaryDirectory() as sweep_dir:
        started = time.perf_counter()
        subprocess.run([*APP, "-m", *args, f"hydra.sweep.dir={sweep_dir}"], check=True, capture_output=True)
        seconds = time.perf_counter() - started
        summaries = [json.loads(p.read_text()) for p in Path(sweep_dir).glob("*/summary.json")]
    completed = sum(s["status"] in ("completed", "diverged") for s in summaries)
    if completed != expected_runs:
        raise RuntimeError(f"expected {expected_runs} finished runs, found {completed}")
    return seconds


def side_by_side(variants: dict[str, tuple[list[str], int]], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(repeats):
        for name, (args, runs) in variants.items():
            times[name].append(sweep_seconds(args, runs))
        print(f"  repeat {repeat + 1}: " + ", ".join(f"{n} {t[-1]:.1f} s" for n, t in times.items()), flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="sweep", choices=["sweep", "gpu", "scale", "demo"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None, help="trainer.device (sweep: cpu; gpu: cuda)")
    parser.add_argument("--limit-train", type=int, default=None, help="gpu mode: data.limit_train, to fit a budget")
    parser.add_argument("--runs", default=None, help="the stack sizes K (gpu mode: 1,8,64; scale: 256,512,1024)")
    parser.add_argument("--epochs", default="1", help="gpu mode: epochs per run; 1,3: the steady state too")
    parser.add_argument("--no-graphs", action="store_true", help="gpu mode: trainer.cuda_graphs=false on both sides")
    parser.add_argument("--peak-tflops", type=float, default=None, help="scale mode: the device's fp32 peak")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "vgbench.provision", "data=mnist"], check=True, capture_output=True)
    result: dict = {"mode": args.mode}
    if args.mode == "sweep":
        grid = [
            *SHAPE,
            "trainer.epochs=1",
            f"trainer.device={args.device or 'cpu'}",
            "trainer.seed=0,1,2,3",
            "optimizer.lr=0.01,0.03,0.1,0.3",
        ]
        times = side_by_side(
            {"stacked": ([*grid, "hydra/launcher=stacked"], 16), "parallel": ([*grid, "hydra/launcher=parallel"], 16)},
            args.repeats,
        )
        ratio = min(times["stacked"]) / min(times["parallel"])
        result |= {"seconds": times, "ratio": ratio}
        print(
            f"16-run MNIST sweep (4 seeds x 4 lrs, 10x128 ReLU, 1 epoch): stacked {min(times['stacked']):.1f} s, "
            f"parallel {min(times['parallel']):.1f} s"
        )
        line = f"ratio stacked / parallel: {ratio:.3f} (target <= 0.6)"
    elif args.mode == "scale":
        result |= scale(args)
        line = result["line"]
    elif args.mode == "demo":
        preset = ["experiment=vanishing", "trainer.device=cpu"]
        before = [*preset, "trainer.seed=0", "trainer.epochs=3", "hydra/launcher=parallel"]
        times = side_by_side({"3 seeds stacked": (preset, 48), "1 seed parallel": (before, 16)}, args.repeats)
        ratio = min(times["3 seeds stacked"]) / min(times["1 seed parallel"])
        result |= {"seconds": times, "ratio": ratio}
        line = f"ratio demo with 3 seeds stacked / 1 seed parallel: {ratio:.3f} (target <= 1.3)"
    else:
        device = args.device or "cuda"
        limit = [f"data.limit_train={args.limit_train}"] if args.limit_train else []
        lengths = [int(e) for e in args.epochs.split(",")]
        ratios: dict[str, float] = {}
        for runs in (int(k) for k in (args.runs or "1,8,64").split(",")):
            figures = result[f"K={runs}"] = {}
            for epochs in lengths:
                grid = [
                    *SHAPE,
                    *limit,
                    f"trainer.epochs={epochs}",
                    f"trainer.device={device}",
                    f"trainer.cuda_graphs={str(not args.no_graphs).lower()}",
                    "logger.tensorboard=false",
                    "trainer.seed=" + ",".join(map(str, range(runs))),
                ]
                sides = {
                    "stacked": ([*grid, "hydra/launcher=stacked"], runs),
                    "processes": ([*grid, "hydra/launcher=parallel"], runs),
                }
                times = side_by_side(sides, args.repeats)
                throughput = {name: 60 * runs * epochs / min(seconds) for name, seconds in times.items()}
                ratio = ratios[f"K={runs}, {epochs} epoch(s)"] = throughput["stacked"] / throughput["processes"]
                figures[f"epochs={epochs}"] = {"seconds": times, "run_epochs_per_minute": throughput, "ratio": ratio}
                print(
                    f"K={runs}, {epochs} epoch(s): stacked {throughput['stacked']:.1f}, one process per run "
                    f"{throughput['processes']:.1f} run-epochs/min: {ratio:.1f}x",
                    flush=True,
                )
            if len(lengths) == 2:  # the steady state: what one more epoch costs each side
                best = {
                    side: [min(figures[f"epochs={e}"]["seconds"][side]) for e in lengths]
                    for side in ("stacked", "processes")
                }
                added = {side: (long - short) / (lengths[1] - lengths[0]) for side, (short, long) in best.items()}
                ratio = ratios[f"K={runs}, one more epoch"] = added["processes"] / added["stacked"]
                figures["one_more_epoch"] = {"seconds": added, "ratio": ratio}
                print(
                    f"K={runs}, one more epoch: stacked {added['stacked']:.2f} s, one process per run "
                    f"{added['processes']:.2f} s: {ratio:.1f}x",
                    flush=True,
                )
        last = list(ratios)[-1]
        result |= {"epochs": lengths, "cuda_graphs": not args.no_graphs, "ratios": ratios, "ratio": ratios[last]}
        line = f"throughput ratio stacked / one process per run at {last}: {ratios[last]:.1f}x (target >= 10)"
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(line)


def scale(args: argparse.Namespace) -> dict:
    """--mode scale: one stack of K runs, 1 and 2 epochs, each once."""
    import torch

    device = args.device or "cuda"
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else device
    peak = args.peak_tflops or next((v for k, v in FP32_PEAK_TFLOPS.items() if k in name), None)
    runs_list = [int(k) for k in (args.runs or "256,512,1024").split(",")]
    step_flops = training_flops([784, *[128] * 10, 10], 64)
    flops = step_flops * MNIST_TRAIN_STEPS
    figures: dict = {"device": name, "peak_tflops": peak, "flops_per_run_epoch": flops}
    for runs in runs_list:
        alone = step_seconds(runs, device, steps=200)
        steps_tflops = runs * step_flops / alone / 1e12
        seconds = {}
        for epochs in (1, 2):
            grid = [
                *SHAPE,
                f"trainer.epochs={epochs}",
                f"trainer.device={device}",
                "logger.tensorboard=false",
                "hydra/launcher=stacked",
                f"hydra.launcher.max_stack={runs}",
                f"trainer.seed=range({runs})",
            ]
            seconds[epochs] = sweep_seconds(grid, runs)
        steady = seconds[2] - seconds[1]
        tflops = runs * flops / steady / 1e12 if steady > 0 else float("nan")
        figures[f"K={runs}"] = {
            "one_epoch_s": seconds[1],
            "two_epochs_s": seconds[2],
            "steady_epoch_s": steady,
            "useful_tflops": tflops,
            "of_peak": tflops / peak if peak else None,
            "step_alone_s": alone,
            "steps_useful_tflops": steps_tflops,
            "steps_of_peak": steps_tflops / peak if peak else None,
        }

        def share(value: float) -> str:
            return f", {value / peak:.0%} of its {peak:g}" if peak else ""

        print(
            f"K={runs}: one epoch {seconds[1]:.1f} s with start-up; one more {steady:.2f} s: "
            f"{tflops:.2f} useful TFLOP/s{share(tflops)}; a step alone {alone * 1e3:.2f} ms: "
            f"{steps_tflops:.2f} useful TFLOP/s{share(steps_tflops)}",
            flush=True,
        )
    last = figures[f"K={runs_list[-1]}"]
    figures["line"] = f"K={runs_list[-1]}: one epoch in {last['one_epoch_s']:.1f} s with start-up (target < 10 s)"
    return figures


if __name__ == "__main__":
    main()
