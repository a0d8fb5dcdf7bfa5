"""Data on the device: each split is one normalised tensor, and a batch is an index slice of a randperm.

No Dataset, no DataLoader, no per-sample __getitem__: MNIST is 47 MB as float32, so it lives on the
training device whole and a batch costs one `index_select`. The runs of a stack share the splits (the
held-out examples depend on `data.split_seed`, not on the run's seed) and each draws its own order.

A process keeps the last splits it prepared (on the CPU, read-only): a launcher's worker that trains
several stacks or jobs of one dataset reads, verifies and normalises it once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from vgbench.config import validation_size
from vgbench.provision import FILES, provision, read_idx


@dataclass
class Split:
    x: Tensor  # (n, num_features) float32
    y: Tensor  # (n,) int64

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def gather(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """The examples at `idx` ([K, batch] indices: each run's own) as x [K, batch, features] and y
        [K, batch]. index_select on the flat indices: x[idx] is 5x slower on the CPU (0.25 against 0.05 ms
        for 16 runs' batches of 64 MNIST images)."""
        flat = idx.reshape(-1)
        return (
            self.x.index_select(0, flat).view(*idx.shape, *self.x.shape[1:]),
            self.y.index_select(0, flat).view(idx.shape),
        )


@dataclass
class Data:
    train: Split
    val: Split | None  # None when data.val_size == 0
    test: Split
    num_features: int
    num_classes: int
    source: str  # where the files came from, or "synthetic"

    @property
    def held_out(self) -> tuple[str, Split]:
        """The split evaluated each epoch: validation if there is one, else test."""
        return ("val", self.val) if self.val is not None else ("test", self.test)


def synthetic_splits(cfg: DictConfig) -> tuple[Split, Split]:
    """Gaussian clusters, one per class, shaped like flattened MNIST; the same for every run.

    Each feature carries a unit-variance class signal under Gaussian noise of std `noise`: at the
    default noise=2 a small MLP reaches about 0.65 test accuracy after one epoch and 0.9 after two.
    """
    generator = torch.Generator().manual_seed(cfg.generator_seed)
    means = torch.randn(cfg.num_classes, cfg.num_features, generator=generator)

    def draw(n: int) -> Split:
        y = torch.randperm(n, generator=generator) % cfg.num_classes
        x = means[y] + cfg.noise * torch.randn(n, cfg.num_features, generator=generator)
        return Split(x, y)

    return draw(cfg.num_train), draw(cfg.num_test)


def idx_splits(files: dict[str, np.ndarray]) -> tuple[Split, Split]:
    """Train and test splits from the four IDX arrays (keyed by file name), pixels scaled to [0, 1]."""

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        x = torch.tensor(images, dtype=torch.float32).flatten(1) / 255
        return Split(x, torch.tensor(labels, dtype=torch.int64))

    return (
        split(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"]),
        split(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"]),
    )


def idx_dataset(name: str) -> Callable[[DictConfig], tuple[Split, Split, str]]:
    def load(cfg: DictConfig) -> tuple[Split, Split, str]:
        provisioned = provision(name, cfg.root)
        train, test = idx_splits({file: read_idx(provisioned.raw_dir / file) for file in FILES})
        return train, test, provisioned.source

    return load


# name -> (train, test, where they came from)
DATASETS: dict[str, Callable[[DictConfig], tuple[Split, Split, str]]] = {
    "mnist": idx_dataset("mnist"),
    "fashion_mnist": idx_dataset("fashion_mnist"),
    "synthetic": lambda cfg: (*synthetic_splits(cfg), "synthetic"),
}


IDX_SHAPE = (784, 10)  # MNIST and Fashion-MNIST: 28 x 28 pixels, 10 classes


class InputMoments(NamedTuple):
    """What the theory needs of the data (vgbench.theory.predict's arguments, in its order)."""

    second_moment: float  # E x_i^2: where the q map starts
    mean: float  # E x_i: a skip connection on the first layer carries it
    feature_variance: float  # mean over features of Var x_i: what batch norm's first layer normalises


def feature_shape(cfg: DictConfig) -> tuple[int, int]:
    """(features, classes) of a data config, without loading the data."""
    return (cfg.num_features, cfg.num_classes) if cfg.name == "synthetic" else IDX_SHAPE


def data_shape(cfg: DictConfig, with_batch_spread: bool = False) -> tuple[int, int, InputMoments]:
    """(features, classes, InputMoments) for the theory, without loading the data where it can: standardised
    data has a second moment of 1 and a mean of 0; raw data, and the features' spread, are measured."""
    features, classes = feature_shape(cfg)
    if cfg.normalize and not with_batch_spread:
        return features, classes, InputMoments(1.0, 0.0, 1.0)
    return features, classes, input_moments(load_data(cfg, torch.device("cpu")))


def input_moments(data: Data) -> InputMoments:
    """The training examples' InputMoments."""
    x = data.train.x.double()
    return InputMoments(float(x.pow(2).mean()), float(x.mean()), float(x.var(dim=0, correction=0).mean()))


def prepare_splits(cfg: DictConfig) -> Data:
    """Provision (if needed), limit, hold out and normalise the splits, on the CPU."""
    train, test, source = DATASETS[cfg.name](cfg)
    if cfg.limit_train is not None:
        train = Split(train.x[: cfg.limit_train], train.y[: cfg.limit_train])
    if cfg.limit_test is not None:
        test = Split(test.x[: cfg.limit_test], test.y[: cfg.limit_test])

    val = None
    val_size = validation_size(cfg.val_size, len(train))
    if val_size > 0:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.split_seed))
        val_idx, train_idx = order[:val_size], order[val_size:]
        train, val = Split(train.x[train_idx], train.y[train_idx]), Split(train.x[val_idx], train.y[val_idx])

    if cfg.normalize:  # statistics of the training examples only: nothing leaks from val or test
        mean, std = train.x.mean(), train.x.std()
        train, test = (Split((s.x - mean) / std, s.y) for s in (train, test))
        val = Split((val.x - mean) / std, val.y) if val is not None else None

    num_classes = int(max(train.y.max(), test.y.max())) + 1
    return Data(train=train, val=val, test=test, num_features=train.x.shape[1], num_classes=num_classes, source=source)


_prepared: dict[str, Data] = {}  # this process's last splits, by data config (and working folder)


def load_data(cfg: DictConfig, device: torch.device) -> Data:
    """The splits of `cfg` on `device`: prepared once per process (`prepare_splits`), then copied to the
    device. On the CPU every caller shares the same tensors, so nothing may write into them."""
    # a relative data.root depends on the cwd; the normalisation's last bits on the torch thread count
    key = f"{os.getcwd()}\n{torch.get_num_threads()}\n{OmegaConf.to_yaml(cfg, resolve=True)}"
    if key not in _prepared:
        _prepared.clear()
        _prepared[key] = prepare_splits(cfg)
    data = _prepared[key]
    return replace(
        data,
        train=data.train.to(device),
        val=data.val.to(device) if data.val is not None else None,
        test=data.test.to(device),
    )


def epoch_order(num_examples: int, seed: int, epoch: int) -> Tensor:
    """One run's order of the training examples in one epoch: a permutation that depends only on
    (seed, epoch). Stateless on purpose: a run resumed at epoch k draws exactly the batches of an
    uninterrupted run, alone or in any stack."""
    return torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def epoch_orders(num_examples: int, seeds: Sequence[int], epoch: int, device: torch.device) -> Tensor:
    """Each run's order of the training examples in this epoch, as a [K, num_examples] tensor on the
    device: batch b of run k is row k, columns b * batch_size onward (the last batch is smaller when
    batch_size does not divide num_examples)."""
    return torch.stack([epoch_order(num_examples, seed, epoch) for seed in seeds]).to(device)
