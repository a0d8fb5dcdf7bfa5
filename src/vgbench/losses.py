"""Losses, per example: logits [..., classes] and targets [...] in, one loss per example [...] out.

The trainer averages over each run's batch (a stack's runs each get the gradient of their own mean loss)
and sums over a split to evaluate it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """-log softmax(z)_y: the softmax output with its matching loss."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none").view(
        target.shape
    )


def quadratic_cost(logits: Tensor, target: Tensor) -> Tensor:
    """C = 1/2 ||softmax(z) - onehot(y)||^2: the quadratic cost of textbook treatments."""
    probabilities = torch.softmax(logits, dim=-1)
    # the one-hot targets by scatter: F.one_hot checks the targets' range on the host, a sync every step
    onehot = torch.zeros_like(probabilities).scatter_(-1, target.unsqueeze(-1), 1.0)
    return 0.5 * (probabilities - onehot).pow(2).sum(dim=-1)


LossFunction = Callable[[Tensor, Tensor], Tensor]
LOSSES: dict[str, LossFunction] = {"cross_entropy": cross_entropy, "mse": quadratic_cost}
