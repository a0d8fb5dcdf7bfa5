"""A stacked state's runs, one at a time: the tensors of a stack of K runs carry a leading run dimension,
and each run's share is cut out (to save it) or copied back in (to resume it) as a stack of one.

The optimizer and the checkpoint both use these; neither depends on the other's format.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def run_slices(state: dict[Any, torch.Tensor], runs: int) -> list[dict[Any, torch.Tensor]]:
    """Each run's share of a stacked state dict, as a stack of one. Each tensor leaves the device once, not
    once per run: on a GPU that is one copy (and host sync) where a K-run stack would make K."""
    host = {name: tensor.cpu() for name, tensor in state.items()}
    return [{name: tensor[run : run + 1].clone() for name, tensor in host.items()} for run in range(runs)]


@torch.no_grad()
def load_run_slice(module: nn.Module, run: int, saved: dict[str, torch.Tensor]) -> None:
    """Copy one run's saved share (a stack of one) into row `run` of a stacked module."""
    state = module.state_dict()
    for name, tensor in saved.items():
        state[name][run].copy_(tensor[0])
