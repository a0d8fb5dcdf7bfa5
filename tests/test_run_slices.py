"""A stacked state's runs, one at a time (vgbench.run_slices): cut out and copied back exactly."""

import torch
from torch import nn

from vgbench.run_slices import load_run_slice, run_slices


def test_each_run_gets_its_own_row_as_a_stack_of_one_that_shares_no_memory():
    state = {"w": torch.arange(24.0).reshape(3, 2, 4), "b": torch.arange(6.0).reshape(3, 2)}
    shares = run_slices(state, 3)
    assert len(shares) == 3
    for run, share in enumerate(shares):
        assert share["w"].shape == (1, 2, 4) and torch.equal(share["w"][0], state["w"][run])
        assert torch.equal(share["b"][0], state["b"][run])
    shares[1]["w"].zero_()
    assert state["w"][1].sum() == sum(range(8, 16))  # the original row is untouched


def test_a_saved_share_goes_back_into_its_row_only():
    class Stacked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(3, 2))

    module = Stacked()
    load_run_slice(module, 2, {"weight": torch.tensor([[5.0, 6.0]])})
    assert module.weight.tolist() == [[0.0, 0.0], [0.0, 0.0], [5.0, 6.0]]
