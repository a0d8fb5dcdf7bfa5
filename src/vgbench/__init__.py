"""vgbench: how gradients flow through deep networks, measured (and predicted)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from vgbench.watcher import Watch

from vgbench.version import __version__

__all__ = ["__version__", "watch"]


def watch(model: nn.Module, out_dir: str | Path, every_n_steps: int = 100, **options: Any) -> Watch:
    """`vgbench.watch(model, out_dir=..., every_n_steps=...)`: watch any model's gradient flow
    (vgbench.watcher). Imported on first call, so `import vgbench` stays light."""
    from vgbench.watcher import Watch

    return Watch(model, out_dir, every_n_steps, **options)
