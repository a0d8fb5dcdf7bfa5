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


def images(synthetic: bool, limit: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised training images [N, 1, 28, 28] and labels, through vgbench's data (provisioned on first
    use, MD5-verified)."""
    overrides = (
        ["data=synthetic", f"data.num_train={limit}"] if synthetic else ["data=mnist", f"data.limit_train={limit}"]
    )
    data = load_data(compose_config([*overrides, "data.val_size=0"]).data, torch.device("cpu"))
    return data.train.x.view(-1, 1, 28, 28), data.train.y


def batches(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - size + 1, size):
            index = order[start : start + size]
            yield x[index], y[index]


def train_watched(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    out_dir: Path,
    config: dict,
    steps: int,
    every: int,
    seed: int,
    lr: float = 0.05,
) -> dict:
    """SGD on `model` with a vgbench watch; returns the run's summary."""
    watch = vgbench.watch(model, out_dir=out_dir, every_n_steps=every, config=config)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for step, (x, y) in zip(range(steps), batches(*data, 64, seed), strict=False):
        with watch.step(step) as extra:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            extra["train/batch_loss"] = loss
    with torch.no_grad():
        model.eval()
        accuracy = (model(data[0][:2000]).argmax(dim=1) == data[1][:2000]).float().mean().item()
    return json.loads(watch.close(final={"train_acc": accuracy}).read_text())
