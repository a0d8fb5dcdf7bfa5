"""Mixed precision: autocast for the forward pass and, for fp16, loss scaling.

bf16 keeps float32's exponent range, so it needs no loss scale. fp16 does: GradScaler multiplies the
loss by a large factor (2^16 at first) so small gradients survive, unscales the gradients before the
step, and skips a step whose gradients overflowed. Its overflow check is a host sync on every step
(GradScaler's own `found_inf` read), the one per-step sync vgbench cannot avoid under fp16. fp16 also
cannot hold gradients below about 6e-8 (and flushes those below 6e-5 to fewer digits), which is where a
deep sigmoid stack's first layers are: measure vanishing gradients in fp32 or bf16 (docs/gpu.md).

The monitor's statistics are computed in float32 whatever the mode (vgbench.monitor).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

from vgbench.errors import ConfigError
from vgbench.optim import KeptUpdate, PerRun, StackedOptimizer

AMP_MODES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Stepped:
    """What one optimizer step leaves for the monitor: each parameter's update, and the loss scale the
    backward pass ran under (a device tensor for fp16; None otherwise)."""

    updates: KeptUpdate | None  # None unless asked for
    loss_scale: Tensor | None


class MixedPrecision:
    def __init__(self, mode: str, device: torch.device) -> None:
        if mode == "fp16" and device.type != "cuda":
            raise ConfigError(f"trainer.amp='fp16' needs a CUDA device, not {device}; use bf16 or none")
        self.dtype = AMP_MODES[mode]
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        # no cast cache: each weight is cast once per forward pass anyway, and a CUDA graph's capture needs
        # it off (vgbench.graphs)
        return torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=False)

    def backward_and_step(self, loss: Tensor, optimizer: StackedOptimizer, keep_updates: bool = False) -> Stepped:
        """Backward, step, and (fp16) the scale update, in the one order GradScaler allows. The updates come
        back with `keep_updates` (the monitor's steps)."""
        if not self.scaler.is_enabled():
            loss.backward()
            return Stepped(optimizer.step(keep_updates=keep_updates), None)
        # the scale this backward runs under, read on the device (scale(1), no host sync) before update()
        # changes it; the first call to scale() creates it
        scale = self.scaler.scale(torch.ones((), device=loss.device))
        self.scaler.scale(loss).backward()
        updates = self.scaler.step(optimizer, keep_updates=keep_updates)  # None if skipped for an overflow
        self.scaler.update()
        if updates is None and keep_updates:  # skipped: nothing was added
            nothing = PerRun([0.0], optimizer.device)
            updates = KeptUpdate([torch.zeros_like(p) for p in optimizer.params], nothing, optimizer.stack)
        return Stepped(updates, scale)
