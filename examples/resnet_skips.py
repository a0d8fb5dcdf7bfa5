"""Skip connections and batch norm against the vanishing gradient: a ResNet-style network of 3x3 residual
blocks, with and without its skips and its batch norm, sigmoid-free (ReLU), watched by vgbench.

    python examples/resnet_skips.py                       # skips x batch norm x 2 seeds, 12 blocks
    vgbench-report outputs/watch/resnet
"""

from __future__ import annotations

import torch
from common import arguments, images, train_watched
from torch import nn


class Block(nn.Module):
    """conv -> [BN] -> ReLU -> conv -> [BN], added to the input when `skip`, then ReLU."""

    def __init__(self, channels: int, skip: bool, norm: bool) -> None:
        super().__init__()
        self.skip = skip
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=not norm)
        self.norm1 = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not norm)
        self.norm2 = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm2(self.conv2(self.relu1(self.norm1(self.conv1(x)))))
        return self.relu2(x + h if self.skip else h)


def resnet(blocks: int, skip: bool, norm: bool, channels: int = 16) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        *(Block(channels, skip, norm) for _ in range(blocks)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, 10),
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], "resnet")
    parser.add_argument("--blocks", type=int, default=12)
    args = parser.parse_args()
    data = images(args.synthetic)
    for skip in (True, False):
        for norm in (True, False):
            for seed in args.seeds:
                torch.manual_seed(seed)
                config = {"skip": skip, "batchnorm": norm, "blocks": args.blocks, "seed": seed}
                name = ",".join(f"{k}={v}" for k, v in config.items())
                model = resnet(args.blocks, skip, norm)
                summary = train_watched(model, data, args.out / name, config, args.steps, args.every, seed)
                print(
                    f"{name}: first/last gradient {summary['first_to_last_grad_ratio']['step0']:.1e} at step 0, "
                    f"{summary['flow']['kind']}; test accuracy {summary['final']['test_acc']:.3f}"
                )


if __name__ == "__main__":
    main()
