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
  --mode demo   `make demo`'s sweep (the vanishing preset: 3 seeds, one epoch, stacked, report) against the
                demo before stacking (one seed, three epochs, the parallel launcher, report). Target: <= 1.3x.

    python scripts/bench_stacked.py [--mode sweep] [--repeats 2] [--json out.json]

The ratio is printed last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = [sys.executable, "-m", "vgbench.app"]
SHAPE = ["data=mnist", "activation=relu", "model.depth=10", "model.width=128", "monitor.every_n_steps=100"]


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
    parser.add_argument("--mode", default="sweep", choices=["sweep", "gpu", "demo"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None, help="trainer.device (sweep: cpu; gpu: cuda)")
    parser.add_argument("--limit-train", type=int, default=None, help="gpu mode: data.limit_train, to fit a budget")
    parser.add_argument("--runs", default="1,8,64", help="gpu mode: the stack sizes K")
    parser.add_argument("--epochs", default="1", help="gpu mode: epochs per run; 1,3: the steady state too")
    parser.add_argument("--no-graphs", action="store_true", help="gpu mode: trainer.cuda_graphs=false on both sides")
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
        for runs in (int(k) for k in args.runs.split(",")):
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


if __name__ == "__main__":
    main()
