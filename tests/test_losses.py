"""vgbench.losses: each loss per example, against its textbook formula."""

import math

import torch
import torch.nn.functional as F

from vgbench.losses import cross_entropy, quadratic_cost


def test_quadratic_cost_is_half_the_squared_distance_to_the_one_hot_target():
    logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])  # [K=1, batch=2, classes=2]
    target = torch.tensor([[0, 1]])
    p = 1 / (1 + math.exp(-2.0))  # softmax of (2, 0): (p, 1 - p)
    expected = [0.5 * (0.25 + 0.25), 0.5 * (p**2 + p**2)]
    torch.testing.assert_close(quadratic_cost(logits, target), torch.tensor([expected]))
    logits, target = torch.randn(3, 5, 10), torch.randint(0, 10, (3, 5))
    by_one_hot = 0.5 * (torch.softmax(logits, dim=-1) - F.one_hot(target, 10)).pow(2).sum(dim=-1)
    assert torch.equal(quadratic_cost(logits, target), by_one_hot)


def test_cross_entropy_is_minus_the_log_softmax_of_the_target():
    logits, target = torch.randn(2, 4, 3), torch.randint(0, 3, (2, 4))
    expected = -torch.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(cross_entropy(logits, target), expected)
