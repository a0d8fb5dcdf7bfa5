"""What the examples share: MNIST (or vgbench's synthetic stand-in for quick runs) as image batches, the
command line, and one training loop under a watch."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import vgbench
from vgbench.config import compose_config
from vgbench.data import load_data


def arguments(description: str, out: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=300, help="SGD steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--every", type=int, default=25, help="measure every N steps")
    parser.add_argument("--synthetic", action="store_true", help="vgbench's synthetic data instead of MNIST")
    parser.add_argument("--out", type=Path, default=Path("outputs/watch") / out)
    return parser


Images = tuple[torch.Tensor, torch.Tensor]  # [N, 1, 28, 28] normalised, and the labels


def images(synthetic: bool, limit: int = 10_000) -> tuple[Images, Images]:
    """(training, test) images through vgbench's data: MNIST provisioned on first use and MD5-verified, the
    first `limit` training images and 2000 test images (or vgbench's synthetic stand-in, shaped alike)."""
    if synthetic:
        overrides = ["data=synthetic", f"data.num_train={limit}", "data.num_test=2000"]
    else:
        overrides = ["data=mnist", f"data.limit_train={limit}", "data.limit_test=2000"]
    data = load_data(compose_config([*overrides, "data.val_size=0"]).data, torch.device("cpu"))
    return (data.train.x.view(-1, 1, 28, 28), data.train.y), (data.test.x.view(-1, 1, 28, 28), data.test.y)


def batches(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - size + 1, size):
            index = order[start : start + size]
            yield x[index], y[index]


def train_watched(
    model: nn.Module,
    data: tuple[Images, Images],
    out_dir: Path,
    config: dict,
    steps: int,
    every: int,
    seed: int,
    lr: float = 0.05,
) -> dict:
    """SGD with momentum on `model` under a vgbench watch, then its test accuracy; returns the run's summary."""
    (train_x, train_y), (test_x, test_y) = data
    watch = vgbench.watch(model, out_dir=out_dir, every_n_steps=every, config=config)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for step, (x, y) in zip(range(steps), batches(train_x, train_y, 64, seed), strict=False):
        with watch.step(step) as extra:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            extra["train/batch_loss"] = loss
    with torch.no_grad():
        model.eval()
        logits = model(test_x)
    final = {
        "test_acc": (logits.argmax(dim=1) == test_y).float().mean().item(),
        "test_loss": F.cross_entropy(logits, test_y).item(),
        "train_loss": loss.item(),
    }
    return json.loads(watch.close(final=final).read_text())
