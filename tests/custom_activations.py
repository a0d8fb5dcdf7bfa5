"""Activations defined outside vgbench, for tests/test_custom_activation.py (activation=custom)."""

import torch


def scaled_softsign(z: torch.Tensor) -> torch.Tensor:
    """2 z / (1 + |z|): bounded, zero-centred, f'(0) = 2."""
    return 2 * z / (1 + z.abs())


def cumulative(z: torch.Tensor) -> torch.Tensor:  # each output depends on earlier inputs: not elementwise
    return z.cumsum(-1)


def row_sum(z: torch.Tensor) -> torch.Tensor:  # changes the shape
    return z.sum(-1)


NOT_A_FUNCTION = 3
