"""The vanishing gradient in a convnet: a plain CNN (3x3 convolutions, no skips, no norm) with sigmoid or
ReLU at growing depth, watched by vgbench.

    python examples/cnn_sigmoid_vs_relu.py                 # sigmoid and ReLU x depth 2, 6, 10 x 2 seeds
    vgbench-report outputs/watch/cnn                      # the report groups the runs by what differs

Every run's folder holds vgbench's files (summary.json, layers.csv, steps.csv, TensorBoard events).
"""

from __future__ import annotations

import torch
from common import arguments, images, train_watched
from torch import nn

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


def cnn(activation: str, depth: int, channels: int = 16) -> nn.Sequential:
    """`depth` 3x3 convolutions with the activation after each (the first two halve the resolution), then
    global average pooling and a linear classifier. PyTorch's default init, as a user's model would have."""
    layers: list[nn.Module] = []
    for index in range(depth):
        stride = 2 if index < 2 else 1
        layers += [
            nn.Conv2d(1 if index == 0 else channels, channels, 3, stride=stride, padding=1),
            ACTIVATIONS[activation](),
        ]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], "cnn")
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 6, 10])
    args = parser.parse_args()
    data = images(args.synthetic)
    for activation in ACTIVATIONS:
        for depth in args.depths:
            for seed in args.seeds:
                torch.manual_seed(seed)
                config = {"activation": activation, "depth": depth, "seed": seed}
                name = ",".join(f"{k}={v}" for k, v in config.items())
                summary = train_watched(
                    cnn(activation, depth), data, args.out / name, config, args.steps, args.every, seed
                )
                print(
                    f"{name}: first/last gradient {summary['first_to_last_grad_ratio']['step0']:.1e} at step 0, "
                    f"{summary['flow']['kind']}; test accuracy {summary['final']['test_acc']:.3f}"
                )


if __name__ == "__main__":
    main()
