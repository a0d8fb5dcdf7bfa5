"""Sweeps on MNIST through the launchers, timed by wall clock.

default       an 8-run sweep (sigmoid, ReLU x depth 20, 10, 5, 2) with the local parallel launcher
              (one process per core, one torch thread each) against Hydra's basic launcher (one run after
              another, all cores each), alternating; the best wall time of each is compared.
              Target: parallel / basic <= 0.65 on 2 cores.
--gpu-sweep   the 16-run vanishing sweep (4 activations x 4 depths, one epoch) on one GPU through the
              parallel launcher (at most jobs_per_gpu processes per GPU): its wall time, and each run's
              device, status and test accuracy.

  python scripts/bench_sweep.py [--repeats 1] [--epochs 3] [--gpu-sweep] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = [sys.executable, "-m", "vgbench.app"]
SWEEP = [
    "-m",
    "data=mnist",
    "activation=sigmoid,relu",
    "model.depth=20,10,5,2",
    "model.width=128",
    "optimizer.lr=0.05",
    "trainer.device=cpu",
    "logger.tensorboard=true",
]


def sweep(command: list[str], expected: int) -> tuple[float, list[dict]]:
    with tempfile.TemporaryDirectory() as sweep_dir:
        started = time.perf_counter()
        subprocess.run([*command, f"hydra.sweep.dir={sweep_dir}"], check=True, capture_output=True)
        seconds = time.perf_counter() - started
        summaries = [json.loads(p.read_text()) for p in Path(sweep_dir).glob("*/summary.json")]
    if len(summaries) != expected:
        raise RuntimeError(f"expected {expected} runs, found {len(summaries)}")
    return seconds, summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)  # the vanishing preset's budget
    parser.add_argument("--gpu-sweep", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "vgbench.provision", "data=mnist"], check=True, capture_output=True)
    if args.gpu_sweep:
        # the vanishing preset with one seed: 16 runs, one process each
        seconds, summaries = sweep(
            [
                *APP,
                "experiment=vanishing",
                "trainer.seed=0",
                "trainer.epochs=1",
                "trainer.device=cuda",
                "hydra/launcher=parallel",
            ],
            16,
        )
        runs = [
            {
                "activation": s["config"]["activation"]["name"],
                "depth": s["config"]["model"]["depth"],
                "device": s.get("device"),
                "status": s["status"],
                "test_acc": (s.get("final") or {}).get("test_acc"),
                "ratio_step0": (s.get("first_to_last_grad_ratio") or {}).get("step0"),
            }
            for s in summaries
        ]
        for r in sorted(runs, key=lambda r: (r["activation"], r["depth"])):
            print(
                f"  {r['activation']:10s} depth {r['depth']:2d} on {r['device']}: {r['status']}, test acc "
                f"{r['test_acc']}, first/last {r['ratio_step0']}"
            )
        print(f"16-run sweep on one GPU through the parallel launcher: {seconds:.1f} s")
        if args.json:
            args.json.write_text(json.dumps({"seconds": seconds, "runs": runs}, indent=2))
        raise SystemExit(0 if all(r["status"] == "completed" and r["device"].startswith("cuda") for r in runs) else 1)
    times: dict[str, list[float]] = {"basic": [], "parallel": []}
    for repeat in range(args.repeats):
        for launcher in ("basic", "parallel"):
            extra = [] if launcher == "basic" else ["hydra/launcher=parallel"]
            times[launcher].append(sweep([*APP, *SWEEP, f"trainer.epochs={args.epochs}", *extra], 8)[0])
        print(f"  repeat {repeat + 1}: basic {times['basic'][-1]:.1f} s, parallel {times['parallel'][-1]:.1f} s")
    basic, parallel = min(times["basic"]), min(times["parallel"])
    print(
        f"8-run MNIST sweep ({args.epochs} epoch(s) each) on {os.cpu_count()} cores: basic launcher {basic:.1f} s, "
        f"local parallel launcher {parallel:.1f} s"
    )
    if args.json:
        args.json.write_text(json.dumps({"seconds": times, "ratio": parallel / basic}, indent=2))
    print(f"ratio parallel / basic: {parallel / basic:.3f} (target <= 0.65)")


if __name__ == "__main__":
    main()
