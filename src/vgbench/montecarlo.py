"""The back-propagated error of random networks of one shape at finite width, by Monte Carlo.

Mean-field theory is the limit of infinite width. For most of vgbench's MLPs it is already close at 128
units, but not for a ReLU stream with skip connections: there the corrections are O(1/n) per layer, and
the stream amplifies them layer after layer, so the limit is approached only as ln n. The reason is plain in
one layer. Given its forward pass, z = W h, a Gaussian W is exactly z h^T / |h|^2 + W' (I - h h^T / |h|^2)
with W' a fresh copy, so the error going back through a skip is

  g_{l-1} = g_l + h_{l-1} (f(z_l) . g_l) / |h_{l-1}|^2 + (I - P_h) W'^T (f'(z_l) * g_l).

Mean-field theory keeps only the last, free term. The middle one puts the forward stream itself into the
error; the stream contains every later layer's f(z), which is nonzero only where that layer's units are
active, so the error concentrates on the active units, and f'(z) * g keeps more than half of it. The effect
starts from fluctuations of size 1/n and grows faster than the free part: for ReLU with He init, 500 wide,
|delta|^2 grows by about 2.8 per layer near the input rather than the mean field's 2, and over 30 layers
(cross-entropy at the output) the first-to-last ratio is about 45 times the mean-field one at 128 wide, 30
times at 256 and still 18 times at 1000. Odd activations such as tanh keep the stream centred, and the two
agree.

The error at the output matters too: h_l . g_l = out . delta_out at every layer of a bias-free ReLU stream
(it is positively homogeneous), and a softmax that the exploding stream saturates makes delta_out point
along the output (e_argmax - e_y), where a Gaussian error would be nearly orthogonal to it; at 30 layers that
moves the ratio by about a third.

Here the expectation is taken over the weights directly: networks of the given sizes and (sigma_w^2,
sigma_b^2), drawn from Gaussians, on Gaussian inputs with the data's E x^2 (a Gaussian W sees an example only
through |x|), with the run's loss on random labels (at initialisation the labels are independent of the
output). The profile is the geometric mean over networks of sum over the batch of |delta_l|^2 /
|delta_out|^2: a typical network's, as one run measures it (the spread across networks is log-normal, and
the sum over a batch is larger in the log the larger the batch). The draws come from a fixed seed, so a
prediction is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vgbench.activations import Activation
from vgbench.losses import LossFunction, cross_entropy

NETWORKS = 16  # random networks averaged: ln of one network's ratio spreads by about 0.2 over 12 layers
MAX_EXAMPLES = 64  # a batch of 256's typical ratio is within about 5% of 64 examples'
MAX_WEIGHTS = 100_000_000  # drawn in all (a few seconds); wider or deeper shapes keep the mean-field limit
SEED = 0


@dataclass(frozen=True)
class ErrorProfile:
    profile: list[float]  # |delta_l| / |delta_out|, the geometric mean over networks, layer 1 first, 1.0 last
    log_ratio_std: float  # the standard deviation over networks of ln(delta_1 / delta_out)
    networks: int


def error_profile(
    activation: Activation,
    variances: Sequence[tuple[float, float]],
    sizes: Sequence[int],
    q0: float,
    norm: str = "none",
    residual: bool = False,
    keep: float = 1.0,
    loss: LossFunction = cross_entropy,
    batch_size: int = MAX_EXAMPLES,
) -> ErrorProfile | None:
    """The error profile of random networks with these layer sizes [in, hidden..., out] and (sigma_w^2,
    sigma_b^2) per linear layer, built as vgbench builds them (h_l = [h_{l-1} +] dropout(f(norm(z_l))), the
    skip where the widths match; norm none or layernorm), on inputs with E x^2 = q0, the loss on random labels
    over batches of batch_size (at most MAX_EXAMPLES). None when the shape needs more than MAX_WEIGHTS weights
    for two networks, or the float64 errors overflow."""
    if norm not in ("none", "layernorm"):
        raise ValueError(f"norm={norm!r}: the Monte Carlo covers none and layernorm")
    count = networks(sizes)
    if count < 2:
        return None
    generator = torch.Generator().manual_seed(SEED)
    logs = []
    with torch.enable_grad():
        for _ in range(count):
            squared = _one_network(
                activation, variances, sizes, q0, norm, residual, keep, loss, min(batch_size, MAX_EXAMPLES), generator
            )
            if not torch.isfinite(squared).all() or not (squared > 0).all():
                return None
            logs.append(0.5 * torch.log(squared / squared[-1]))
    by_network = torch.stack(logs)
    return ErrorProfile(by_network.mean(0).exp().tolist(), float(by_network[:, 0].std()), count)


def networks(sizes: Sequence[int]) -> int:
    """How many random networks error_profile averages for these layer sizes: NETWORKS, fewer where that would
    draw more than MAX_WEIGHTS weights (below 2: none)."""
    weights = sum(fan_in * fan_out for fan_in, fan_out in zip(sizes, sizes[1:], strict=False))
    return min(NETWORKS, MAX_WEIGHTS // max(weights, 1))


def _one_network(
    activation: Activation,
    variances: Sequence[tuple[float, float]],
    sizes: Sequence[int],
    q0: float,
    norm: str,
    residual: bool,
    keep: float,
    loss: LossFunction,
    examples: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Sum over examples of |delta_l|^2 for each hidden layer and the output's, one random network."""

    def gaussian(*shape: int, variance: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * math.sqrt(variance)

    h = gaussian(examples, sizes[0], variance=q0)
    zs = []
    for (sigma_w2, sigma_b2), fan_in, fan_out in zip(variances, sizes, sizes[1:-1], strict=False):
        z = h @ gaussian(fan_in, fan_out, variance=sigma_w2 / fan_in) + gaussian(fan_out, variance=sigma_b2)
        z = z.detach().requires_grad_(True) if not zs else z
        z.retain_grad()
        zs.append(z)
        a = activation(F.layer_norm(z, (fan_out,)) if norm == "layernorm" else z)
        if keep < 1:
            a = a * (torch.rand(a.shape, generator=generator, dtype=torch.float64) < keep) / keep
        h = h + a if residual and fan_in == fan_out else a
    sigma_w2 = variances[-1][0]
    out = h @ gaussian(sizes[-2], sizes[-1], variance=sigma_w2 / sizes[-2])
    out.retain_grad()
    loss(out, torch.randint(sizes[-1], (examples,), generator=generator)).sum().backward()
    return torch.stack([*(z.grad.pow(2).sum() for z in zs), out.grad.pow(2).sum()]).detach()
