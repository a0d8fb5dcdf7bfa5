"""One MNIST epoch of a 5x256 sigmoid MLP at batch 64: vgbench's loop versus the pytorch/examples way.

The reference is pytorch/examples' mnist/main.py on the CPU: torchvision's MNIST with
ToTensor/Normalize, a shuffling DataLoader, and `loss.item()` every 10 batches for its log line.
vgbench keeps the whole split on the device as one tensor and slices batches out of a randperm.
Both train the same model, built and initialised the same way, and alternate `--repeats` times;
the best time of each is compared.

    python scripts/bench_epoch.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

from vgbench.config import compose_config
from vgbench.data import load_data
from vgbench.model import build_model
from vgbench.train import MixedPrecision, TrainState, build_optimizer, train_epoch

OVERRIDES = ["activation=sigmoid", "model.depth=5", "model.width=256", "data.batch_size=64", "data.val_size=0",
             "trainer.device=cpu", "trainer.epochs=1", "trainer.log_every_n_steps=100"]  # fmt: skip


def vgbench_epoch(cfg, data) -> float:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.activation, data.num_features, data.num_classes)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    precision = MixedPrecision("none", torch.device("cpu"))
    started = time.perf_counter()
    train_epoch(model, data.train, optimizer, F.cross_entropy, precision, cfg, 0, TrainState())
    return time.perf_counter() - started


def pytorch_examples_epoch(cfg, data_root: str) -> float:  # noqa: ANN001
    torch.manual_seed(0)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    # torchvision reads the very files vgbench provisioned, from <root>/MNIST/raw
    dataset = datasets.MNIST(data_root, train=True, download=False, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True)
    model = build_model(cfg.model, cfg.activation, 784, 10)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    started = time.perf_counter()
    model.train()
    for batch_idx, (x, target) in enumerate(loader):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        if batch_idx % 10 == 0:
            loss.item()  # main.py prints it every log_interval=10 batches
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose_config(OVERRIDES)
    data = load_data(cfg.data, cfg.trainer.seed, torch.device("cpu"))  # provisions MNIST if needed
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(vgbench_epoch(cfg, data))
        theirs.append(pytorch_examples_epoch(cfg, str(Path(cfg.data.root).expanduser())))
        print(f"  vgbench {ours[-1]:6.2f} s   pytorch/examples {theirs[-1]:6.2f} s")
    ratio = min(ours) / min(theirs)
    print(f"one epoch, 5x256 sigmoid MLP, batch 64, {args.threads} threads: vgbench {min(ours):.2f} s, "
          f"pytorch/examples {min(theirs):.2f} s")  # fmt: skip
    print(f"ratio vgbench / pytorch-examples: {ratio:.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()
