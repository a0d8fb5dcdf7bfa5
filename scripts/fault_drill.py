"""The fault drill: each case of docs/faults.md that a command can show, end to end through the real
commands in fresh folders, printed as one table: the case, the command's exit code, how many lines it
wrote to stderr, and which files that existed before it changed (none, for every case).

    python scripts/fault_drill.py [--keep DIR]

Cases 10 (a full disk) and 13 (the torch floor) have no command to run here: tests/test_faults.py
covers them.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = [
    "data=synthetic",
    "data.num_train=256",
    "data.num_test=64",
    "model.width=16",
    "trainer.epochs=1",
    "trainer.device=cpu",
    "trainer.cpu_threads=1",
]


def command(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)


def train(*overrides: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return command(str(BIN / "vgbench-train"), *overrides, cwd=cwd)


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def changed(before: dict[Path, bytes], folder: Path) -> list[str]:
    after = snapshot(folder)
    return sorted(str(path) for path, data in before.items() if after.get(path) != data)


def run_case(name: str, root: Path) -> tuple[str, int, int, list[str]]:
    root.mkdir(parents=True)
    if name == "1":
        train(*TINY, "optimizer.lr=1e12", "trainer.log_every_n_steps=1", f"hydra.run.dir={root}")
        before = snapshot(root)
        result = train(*TINY, "optimizer.lr=0.1", "trainer.log_every_n_steps=1", f"hydra.run.dir={root}")
        what = "1 another config into a diverged run's folder"
    elif name == "2":
        train(*TINY, "model.depth=2", f"hydra.run.dir={root}")
        before = snapshot(root)
        result = train(*TINY, "model.depth=4", f"hydra.run.dir={root}")
        what = "2 depth 4 into a completed depth-2 run's folder"
    elif name == "3":
        train(*TINY, "trainer.epochs=1", f"hydra.run.dir={root}")
        sys.path.insert(0, str(REPO / "src"))
        from vgbench.run_lock import RunLock

        holder = RunLock(root)  # as a sweep training this run holds it
        holder.acquire()
        before = snapshot(root)
        result = train(*TINY, "trainer.epochs=2", "trainer.resume=true", f"hydra.run.dir={root}")
        holder.release()
        what = "3 a run into a folder another process is training"
    elif name == "4":
        (root / "summary.json").write_text("[]")
        before = snapshot(root)
        result = train(*TINY, f"hydra.run.dir={root}")
        what = "4 a summary.json that is a list"
    elif name == "5":
        before = snapshot(root)
        result = train(*TINY, "data.val_size=abc", f"hydra.run.dir={root / 'run'}")
        what = "5 data.val_size=abc"
    elif name == "6":
        overrides = [
            "activation=leaky_relu",
            "activation.params.negative_slope=0.05,0.1",
            "optimizer=momentum",
            "optimizer.momentum=0.9",
            "optimizer.nesterov=true",
            "optimizer.weight_decay=0.0001",
            "data.batch_size=32",
            "data.split_seed=3",
            "monitor.every_n_steps=7",
            "model.init=kaiming_normal",
            "model.bias_init=zeros",
            f"data.root={root}/../data",
        ]
        train("-m", *TINY, *overrides, f"hydra.sweep.dir={root}")
        before = snapshot(root)
        result = train("-m", *TINY, *overrides, f"hydra.sweep.dir={root}")  # the same sweep again: all skipped
        before = {path: data for path, data in before.items() if path.name != "train.log"}  # gets the skip's line
        what = "6 a sweep with 16 overrides and a path value, run again (all skipped; train.log aside)"
    elif name == "7":
        train(*TINY, f"hydra.run.dir={root}")
        (root / "events.out.tfevents.4102444800.h.1.0").write_bytes(b"")
        before = snapshot(root)
        result = train(*TINY, "trainer.epochs=2", "trainer.resume=true", f"hydra.run.dir={root}")
        before = {path: data for path, data in before.items() if path.name.startswith("events.out.tfevents.41")}
        what = "7 a resume beside a future-dated event file (returns at once)"
    elif name == "8":
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00" * 64)[:20])
        before = snapshot(root)
        result = command(str(BIN / "vgbench-data"), f"data.root={root}")
        what = "8 a truncated .gz in the data folder"
    elif name == "9":
        for run in ("good", "damaged"):
            train(*TINY, f"hydra.run.dir={root / run}")
        (root / "damaged" / ".hydra" / "overrides.yaml").write_text("- a: [unclosed\n")
        before = {p: d for p, d in snapshot(root).items() if p.parts[0] in ("good", "damaged")}
        result = command(str(BIN / "vgbench-report"), str(root))
        what = "9 a report over a run with a damaged .hydra record"
    elif name == "11":
        (root / "broken_act.py").write_text("def f(z):\n    return z +\n")
        before = snapshot(root)
        result = train(
            *TINY, "activation=custom", "activation.target=broken_act.f", f"hydra.run.dir={root / 'run'}", cwd=root
        )
        what = "11 a custom activation with a syntax error"
    elif name == "12":
        train(
            "-m",
            *TINY,
            "activation=custom",
            'activation.target="<img src=x onerror=alert(1)>",os.path.join',
            f"hydra.sweep.dir={root}",
            "trainer.epochs=1",
        )
        before = {p: d for p, d in snapshot(root).items() if p.name != "report.md"}
        result = command(str(BIN / "vgbench-report"), str(root))
        raw_html = "<img" in (root / "report.md").read_text()
        what = f"12 a value holding HTML in report.md ({'raw' if raw_html else 'escaped'})"
    else:
        raise ValueError(name)
    stderr_lines = len(result.stderr.splitlines())
    return what, result.returncode, stderr_lines, changed(before, root)


CASES = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "11", "12")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, default=None, help="leave the cases' folders here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="fault_drill_"))
    rows = [run_case(name, root / f"case_{name}") for name in CASES]
    print("| case | exit code | stderr lines | files changed |")
    print("| --- | --- | --- | --- |")
    for what, code, lines, files in rows:
        print(f"| {what} | {code} | {lines} | {', '.join(files) or 'none'} |")


if __name__ == "__main__":
    main()
