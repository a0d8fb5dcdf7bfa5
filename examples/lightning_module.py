"""A LightningModule trained by a lightning Trainer with vgbench's callback: the watch in a Lightning
project is one line in `callbacks` (`pip install 'vgbench[lightning]'`).

    python examples/lightning_module.py                   # a 6-layer sigmoid MLP on MNIST, one epoch
    vgbench-report outputs/watch/lightning
"""

from __future__ import annotations

import lightning
import torch
import torch.nn.functional as F
from common import arguments, images
from torch import nn

from vgbench.lightning import WatchCallback


class Classifier(lightning.LightningModule):
    def __init__(self, depth: int, width: int = 128) -> None:
        super().__init__()
        sizes = [784, *[width] * depth]
        hidden = [module for a, b in zip(sizes, sizes[1:], strict=False) for module in (nn.Linear(a, b), nn.Sigmoid())]
        self.net = nn.Sequential(nn.Flatten(), *hidden, nn.Linear(width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], "lightning")
    parser.add_argument("--depth", type=int, default=6)
    args = parser.parse_args()
    (x, y), _ = images(args.synthetic)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True)
    for seed in args.seeds:
        lightning.seed_everything(seed, verbose=False)
        out = args.out / f"depth={args.depth},seed={seed}"
        callback = WatchCallback(out, every_n_steps=args.every, config={"depth": args.depth, "seed": seed})
        trainer = lightning.Trainer(
            max_steps=args.steps,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[callback],
        )
        trainer.fit(Classifier(args.depth), loader)
        print(f"{out}: {(out / 'summary.json').exists() and 'written'}")


if __name__ == "__main__":
    main()
