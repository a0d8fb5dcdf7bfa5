"""An 8-run sweep on MNIST with the local parallel launcher (joblib: one process per core, one torch
thread each) against Hydra's basic launcher (one run after another, all cores each), side by side.

    python scripts/bench_sweep.py [--repeats 1] [--epochs 3]

Each sweep is a fresh `vgbench-train -m ...` process writing into a temporary folder; the two
alternate, and the best wall time of each is compared. Target: parallel / basic <= 0.65 on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = ["-m", "data=mnist", "activation=sigmoid,relu", "model.depth=20,10,5,2", "model.width=128",
         "optimizer.lr=0.05", "trainer.device=cpu", "logger.tensorboard=true"]  # fmt: skip


def sweep_seconds(launcher: str | None, epochs: int) -> float:
    train = Path(sys.executable).parent / "vgbench-train"
    with tempfile.TemporaryDirectory() as sweep_dir:
        command = [str(train), *SWEEP, f"trainer.epochs={epochs}", f"hydra.sweep.dir={sweep_dir}"]
        if launcher:
            command.append(f"hydra/launcher={launcher}")
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        runs = len(list(Path(sweep_dir).glob("*/summary.json")))
    if runs != 8:
        raise RuntimeError(f"expected 8 runs, found {runs}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)  # the vanishing preset's budget
    args = parser.parse_args()
    subprocess.run([str(Path(sys.executable).parent / "vgbench-data"), "data=mnist"], check=True)
    times: dict[str, list[float]] = {"basic": [], "parallel": []}
    for repeat in range(args.repeats):
        times["basic"].append(sweep_seconds(None, args.epochs))
        times["parallel"].append(sweep_seconds("parallel", args.epochs))
        print(f"  repeat {repeat + 1}: basic {times['basic'][-1]:.1f} s, parallel {times['parallel'][-1]:.1f} s")
    basic, parallel = min(times["basic"]), min(times["parallel"])
    print(f"8-run MNIST sweep ({args.epochs} epoch(s) each) on {os.cpu_count()} cores: basic launcher {basic:.1f} s, "
          f"local parallel launcher {parallel:.1f} s")  # fmt: skip
    print(f"ratio parallel / basic: {parallel / basic:.3f} (target <= 0.65)")


if __name__ == "__main__":
    main()
