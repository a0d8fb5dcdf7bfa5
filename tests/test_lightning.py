"""The Lightning callback (vgbench.lightning) with a real lightning Trainer on the CPU: the same numbers as
a plain loop under vgbench.watch, the same files, no hook left behind."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vgbench.watcher import Watch


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 3))


def dataset() -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(
        torch.randn(96, 12, generator=generator), torch.randint(0, 3, (96,), generator=generator)
    )


def classifier(lightning):
    """A LightningModule around `network()` (its class made here: lightning loads only in this test)."""

    class Classifier(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = network()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Classifier()


@pytest.mark.slow  # a real Trainer, and lightning's import
def test_the_callback_measures_what_a_plain_loop_measures_and_leaves_no_hook(tmp_path):
    lightning = pytest.importorskip("lightning")
    from vgbench.lightning import WatchCallback

    module = classifier(lightning)
    trainer = lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[WatchCallback(tmp_path / "lightning", every_n_steps=2, tensorboard=False)],
    )
    trainer.fit(module, torch.utils.data.DataLoader(dataset(), batch_size=32))
    summary = json.loads((tmp_path / "lightning" / "summary.json").read_text())

    plain = network()  # the same weights, batches and steps, without Lightning
    watch = Watch(plain, tmp_path / "plain", every_n_steps=2, tensorboard=False)
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.1)
    for step, (x, y) in enumerate([*torch.utils.data.DataLoader(dataset(), batch_size=32)] * 2):
        with watch.step(step) as extra:
            loss = F.cross_entropy(plain(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            extra["train/batch_loss"] = loss
    expected = json.loads(watch.close().read_text())

    assert summary["measured_steps"] == expected["measured_steps"] == 3  # steps 0, 2, 4 of 6
    assert summary["layer_names"] == ["net.0", "net.2", "net.4"] and summary["activation_names"] == ["net.1", "net.3"]
    for which in ("step0", "final"):
        for metric, values in expected["profile"][which]["layers"].items():
            assert summary["profile"][which]["layers"][metric] == pytest.approx(values, rel=1e-5), (which, metric)
    assert summary["final"]["train/batch_loss"] == pytest.approx(expected["final"]["train/batch_loss"], rel=1e-6)
    assert "train_loss" in summary["final"]  # the trainer's logged metrics
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())
    assert hooks == 0 and all(not p._post_accumulate_grad_hooks for p in module.parameters())
