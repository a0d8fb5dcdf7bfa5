"""vgbench's watch as a PyTorch Lightning callback (`pip install 'vgbench[lightning]'`):

    trainer = lightning.Trainer(callbacks=[vgbench.lightning.WatchCallback("outputs/watch/my_run", every_n_steps=100)])

Each training batch (forward, backward and the optimizer's step, which Lightning runs between these two
hooks) is one `Watch.step` at the trainer's global step; the watch opens when training starts, on the
LightningModule, and closes when it ends, with the trainer's logged metrics as the summary's `final`. The
options are `vgbench.watch`'s. The loss a training step returns is logged as `train/batch_loss`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from vgbench.watcher import Watch


class WatchCallback(Callback):
    def __init__(self, out_dir: str | Path, every_n_steps: int = 100, **options: Any) -> None:
        self.out_dir, self.every_n_steps, self.options = Path(out_dir), every_n_steps, options
        self.watch: Watch | None = None
        self._step: contextlib.AbstractContextManager | None = None
        self._extra: dict[str, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:  # one process writes the run's files
            self.watch = Watch(pl_module, self.out_dir, self.every_n_steps, **self.options)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.watch is not None:
            self._step = self.watch.step(trainer.global_step)
            self._extra = self._step.__enter__()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._step is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._extra["train/batch_loss"] = loss.detach()
        step, self._step = self._step, None
        step.__exit__(None, None, None)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.watch is not None:
            final = {key: float(value) for key, value in trainer.callback_metrics.items()}
            self.watch.close(final=final)
            self.watch = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self._step is not None:  # leave no hook behind
            step, self._step = self._step, None
            with contextlib.suppress(Exception):
                step.__exit__(type(exception), exception, exception.__traceback__)
        if self.watch is not None:
            self.watch.close()
            self.watch = None
