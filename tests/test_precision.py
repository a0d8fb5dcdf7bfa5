"""Mixed precision (vgbench.precision): autocast, and the loss scale each measured step records."""

import pytest
import torch

from tests.conftest import make_cfg
from vgbench.errors import ConfigError
from vgbench.optim import build_optimizer
from vgbench.precision import AMP_MODES, MixedPrecision


def sgd(params, lr=0.5):
    return build_optimizer([make_cfg(f"optimizer.lr={lr}").optimizer], params)


def test_fp16_needs_cuda_and_the_other_modes_autocast_as_named():
    with pytest.raises(ConfigError, match="trainer.amp='fp16' needs a CUDA device, not cpu"):
        MixedPrecision("fp16", torch.device("cpu"))
    assert set(AMP_MODES) == {"none", "bf16", "fp16"}
    w = torch.ones(4, 4)
    with MixedPrecision("bf16", torch.device("cpu")).autocast():
        assert (w @ w).dtype == torch.bfloat16
    with MixedPrecision("none", torch.device("cpu")).autocast():
        assert (w @ w).dtype == torch.float32


def test_without_a_loss_scale_a_step_is_plain_backward_and_update():
    w = torch.nn.Parameter(torch.tensor([[1.0, 2.0]]))
    stepped = MixedPrecision("none", torch.device("cpu")).backward_and_step((w**2).sum(), sgd([w]), keep_updates=True)
    assert stepped.loss_scale is None
    assert w.tolist() == [[0.0, 0.0]]  # w - 0.5 * 2w
    assert stepped.updates[0].tolist() == [[-1.0, -2.0]]


def test_a_scaled_step_records_the_scale_its_backward_ran_under_before_the_scaler_changes_it():
    """GradScaler's logic, the same on every device, run on the CPU: the first step runs under 2^16; an
    overflow skips the step (zero update) and halves the scale for the next one."""
    precision = MixedPrecision("none", torch.device("cpu"))
    precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=1)
    w = torch.nn.Parameter(torch.tensor([[1.0, 2.0]]))
    optimizer = sgd([w])
    first = precision.backward_and_step((w**2).sum(), optimizer, keep_updates=True)
    assert first.loss_scale.item() == 2.0**16
    assert w.tolist() == [[0.0, 0.0]] and first.updates[0].tolist() == [[-1.0, -2.0]]  # unscaled gradients
    assert precision.scaler.get_scale() == 2.0**17  # grown after a good step (growth_interval=1)
    w.data.fill_(1.0)
    overflow = precision.backward_and_step((w * float("inf")).sum(), optimizer, keep_updates=True)
    assert overflow.loss_scale.item() == 2.0**17  # the scale this backward ran under, not the halved one
    assert overflow.updates[0].tolist() == [[0.0, 0.0]] and w.tolist() == [[1.0, 1.0]]  # skipped
    assert precision.scaler.get_scale() == 2.0**16
