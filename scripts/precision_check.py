"""fp32, bf16, fp16 and TF32 runs with the monitor, same seed, on one device: are the statistics the same?

Two MNIST models (5x256 tanh and 10x256 sigmoid, Xavier init, 10000 training images, one epoch) under
each `trainer.amp`, and in float32 with `trainer.tf32=true` (TensorFloat-32 matmuls: CUDA only). For each,
the step-0 profile is compared with the fp32 run's: the largest relative
difference per metric (gradient norms, back-propagated error, activation std) and the largest absolute
difference of the saturated share, and whether every number is finite.

    python scripts/precision_check.py [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

from vgbench.config import compose_config
from vgbench.train import run

MODELS = {"tanh x5": ["activation=tanh", "model.depth=5"], "sigmoid x10": ["activation=sigmoid", "model.depth=10"]}
COMMON = [
    "model.width=256",
    "data.limit_train=10000",
    "data.val_size=0",
    "trainer.epochs=1",
    "logger.tensorboard=false",
    "trainer.checkpoint=false",
    "monitor.every_n_steps=50",
]
RELATIVE = ("grad_norm/weight", "delta_norm", "activation/std")
VARIANTS = {
    "none": ["trainer.amp=none"],
    "bf16": ["trainer.amp=bf16"],
    "fp16": ["trainer.amp=fp16"],
    "tf32": ["trainer.amp=none", "trainer.tf32=true"],
}


def largest_relative(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / abs(y) if y else abs(x - y) for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for model, overrides in MODELS.items():
            profiles = {}
            for name, variant in VARIANTS.items():
                cfg = compose_config([*overrides, *COMMON, f"trainer.device={args.device}", *variant])
                summary = run(cfg, Path(scratch) / f"{model}-{name}".replace(" ", ""))
                profiles[name] = (summary["profile"]["step0"]["layers"], summary["final"]["test_acc"])
            reference = profiles["none"][0]
            for name in ("bf16", "fp16", "tf32"):
                layers, accuracy = profiles[name]
                values = [v for metric in layers.values() for v in metric]
                entry = {
                    f"{metric} max rel diff": largest_relative(layers[metric], reference[metric]) for metric in RELATIVE
                }
                entry["saturated max abs diff"] = max(
                    abs(x - y)
                    for x, y in zip(layers["activation/saturated"], reference["activation/saturated"], strict=True)
                )
                entry["all finite"] = all(v is not None and math.isfinite(v) for v in values)
                entry["test_acc"], entry["test_acc fp32"] = accuracy, profiles["none"][1]
                report[f"{model} {name}"] = entry
                print(
                    f"{model:12s} {name}: "
                    + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items())
                )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    tanh = [report[f"tanh x5 {name}"] for name in ("bf16", "fp16", "tf32")]
    ok = all(
        e["all finite"]
        and e["delta_norm max rel diff"] < 0.05
        and e["grad_norm/weight max rel diff"] < 0.05
        and e["saturated max abs diff"] < 0.02
        for e in tanh
    )
    print(f"bf16, fp16 and TF32 step-0 statistics of tanh x5 within 5% of fp32 (saturated share within 0.02): {ok}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
