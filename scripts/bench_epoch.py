"""One MNIST epoch of a 5x256 sigmoid MLP at batch 64: vgbench's loop against the pytorch/examples way.

The reference is pytorch/examples' mnist/main.py: torchvision's MNIST with ToTensor/Normalize, a
shuffling DataLoader (on CUDA with one worker and pinned memory, as main.py sets), an nn.Sequential of
Linear layers, and `loss.item()` every 10 batches for its log line. vgbench keeps the whole split on
the device as one tensor and slices batches out of a randperm; its epoch is the trainer's own
(vgbench.train.setup and train_epoch, monitor off). The two alternate `--repeats` times; the best time
of each is compared.

    python scripts/bench_epoch.py [--repeats 3] [--threads N] [--device cuda] [--amp bf16] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets, transforms

from vgbench.checkpoint import RunFolder
from vgbench.config import compose_config
from vgbench.placement import Placement
from vgbench.precision import AMP_MODES
from vgbench.train import setup, train_epoch

OVERRIDES = [
    "activation=sigmoid",
    "model.depth=5",
    "model.width=256",
    "data.batch_size=64",
    "data.val_size=0",
    "trainer.epochs=1",
    "trainer.log_every_n_steps=100",
    "monitor.enabled=false",
    "logger.tensorboard=false",
    "trainer.checkpoint=false",
]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def vgbench_epoch(overrides: list[str]) -> float:
    cfg = compose_config(overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        stack = setup([RunFolder(Path(run_dir))], [cfg], Placement(progress=False))  # data on the device
        synchronize(stack.device)
        started = time.perf_counter()
        train_epoch(stack, 0)
        synchronize(stack.device)
        return time.perf_counter() - started


def pytorch_examples_epoch(data_root: str, device: torch.device, amp: str) -> float:
    torch.manual_seed(0)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    # torchvision reads the very files vgbench provisioned, from <root>/MNIST/raw
    dataset = datasets.MNIST(data_root, train=True, download=False, transform=transform)
    extra = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, **extra)
    sizes = [784, 256, 256, 256, 256, 256]
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(fan_in, fan_out), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(256, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    autocast = torch.autocast(device.type, dtype=AMP_MODES[amp]) if amp != "none" else contextlib.nullcontext()
    synchronize(device)
    started = time.perf_counter()
    model.train()
    for batch_idx, (x, target) in enumerate(loader):
        x, target = x.to(device), target.to(device)
        optimizer.zero_grad()
        with autocast:
            output = model(x)
        loss = F.cross_entropy(output.float(), target)
        loss.backward()
        optimizer.step()
        if batch_idx % 10 == 0:
            loss.item()  # main.py prints it every log_interval=10 batches
    synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="none", choices=list(AMP_MODES))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = [
        *OVERRIDES,
        f"trainer.device={args.device}",
        f"trainer.amp={args.amp}",
        f"trainer.cpu_threads={args.threads}",
    ]
    root = str(Path(compose_config(overrides).data.root).expanduser())
    device = torch.device(args.device)
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(vgbench_epoch(overrides))
        theirs.append(pytorch_examples_epoch(root, device, args.amp))
        print(f"  vgbench {ours[-1]:6.2f} s   pytorch/examples {theirs[-1]:6.2f} s")
    ratio = min(ours) / min(theirs)
    print(
        f"one epoch, 5x256 sigmoid MLP, batch 64, {args.device}, amp {args.amp}, {args.threads} threads: "
        f"vgbench {min(ours):.2f} s, pytorch/examples {min(theirs):.2f} s"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": args.device,
                    "amp": args.amp,
                    "vgbench_s": ours,
                    "pytorch_examples_s": theirs,
                    "ratio": ratio,
                },
                indent=2,
            )
        )
    print(f"ratio vgbench / pytorch-examples: {ratio:.3f} (target <= 0.25)")


if __name__ == "__main__":
    main()
