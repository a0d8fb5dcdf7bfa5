"""Mean-field theory of a batch-normalised layer, h -> f(BN(W h + b)), at batch size B.

Pure computation, no I/O (Yang, Pennington, Rao, Sohl-Dickstein and Schoenholz 2019, "A Mean Field Theory of
Batch Normalization"). In a wide layer each unit's pre-activations over the batch, z in R^B, are Gaussian
with the batch covariance of the layer below. At the symmetric fixed point that deep batch-normalised stacks
reach (the paper's BSB1 state) the centred part of that covariance is isotropic, so with G = I - 11^T / B
(removes the batch mean) and xi ~ N(0, I_B)

  forward     u = BN(z) = sqrt(B) G xi / |G xi|: uniform on the sphere of radius sqrt(B) orthogonal to 1,
              whatever the scale of z; the unit's batch variance is sigma^2 = s |G xi|^2 / (B - 1) + eps,
              s = sigma_w^2 v, v the batch-centred second moment of the layer's input per unit
  backward    delta_z = J (f'(u) * g), J = P / sigma, P = G - u u^T / B (BN's Jacobian at unit gain:
              the batch mean and the direction of u are removed, then 1 / sigma)
              g = W_{l+1}^T delta_{l+1}: per unit, g ~ N(0, sigma_w^2 Pi / n) with Pi the batch covariance
              of the error above; Pi is proportional to G below another batch-normalised layer (its
              delta is orthogonal to 1) and to I below the output layer
  so          E|delta_l|^2 = sigma_w,l+1^2 E[tr(P D Pi D P) / sigma^2] / tr(Pi) |delta_l+1|^2, D = diag f'(u)

For equal sigma_w^2 the growth of |delta|^2 per layer of a deep stack, E[tr(P D G D P) (B - 1) / |G xi|^2]
/ ((B - 1) v), does not depend on sigma_w^2: batch norm makes the gradient explode whatever the init. As
B grows, u tends to N(0, 1) per entry and the growth to E[f'(z)^2] / Var f(z), z ~ N(0, 1): pi / (pi - 1)
= 1.467 for ReLU (the paper's gradient explosion rate). The expectations over xi are Monte Carlo over a
fixed set of draws (SAMPLED_ENTRIES numbers in all, the same for every call: a prediction is
deterministic), with the activation's own f and f' from the registry, in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vgbench.activations import Activation
from vgbench.meanfield import Moments

SAMPLED_ENTRIES = 1 << 18  # B x (number of batches drawn): about 0.2% Monte Carlo error on the growth
MIN_BATCHES = 64
EPS = 1e-5  # nn.BatchNorm1d's and vgbench's StackedBatchNorm's


@dataclass(frozen=True)
class BatchNormLayer:
    """One activation's batch-normalised layer at one batch size, as per-draw sums over the batch.

    trace_identity[k] = tr(P D^2 P) and trace_centred[k] = tr(P D G D P) for draw k, spread[k] =
    |G xi_k|^2 / (B - 1) (the unit's batch variance in units of its expectation); second_moment and
    centred_variance are E[mean_b f(u_b)^2] and E[mean_b f(u_b)^2 - (mean_b f(u_b))^2], mean E[f(u_b)].
    """

    batch: int
    trace_identity: np.ndarray
    trace_centred: np.ndarray
    spread: np.ndarray
    second_moment: float
    mean: float
    centred_variance: float

    def backward_factor(self, scale: float, below_batchnorm: bool) -> float:
        """E|delta_z|^2 / E|g|^2 per unit for a unit whose batch variance is `scale` on average: the error
        g arrives with batch covariance proportional to G (from a batch-normalised layer above) or to I."""
        traces, size = (self.trace_centred, self.batch - 1) if below_batchnorm else (self.trace_identity, self.batch)
        return float(np.mean(traces / (scale * self.spread + EPS))) / size


def batchnorm_layer(activation: Activation, batch: int) -> BatchNormLayer:
    """Draw the batches and sum what the forward and backward maps need (see the module's docstring)."""
    if batch < 2:
        raise ValueError(f"batch norm needs a batch of at least 2 examples, got {batch}")
    draws = max(MIN_BATCHES, SAMPLED_ENTRIES // batch)
    xi = np.random.default_rng(0).standard_normal((draws, batch))
    centred = xi - xi.mean(axis=1, keepdims=True)
    squared_length = np.sum(centred**2, axis=1)
    u = math.sqrt(batch) * centred / np.sqrt(squared_length)[:, None]
    with torch.no_grad():
        as_tensor = torch.as_tensor(u, dtype=torch.float64)
        a, d = activation(as_tensor).numpy(), activation.derivative(as_tensor).numpy()
    d2 = d**2
    trace_identity = np.sum(d2 * (1 - 1 / batch - u**2 / batch), axis=1)  # sum_i d_i^2 P_ii
    d_p_d = np.sum(d2, axis=1) - np.sum(d, axis=1) ** 2 / batch - np.sum(d * u, axis=1) ** 2 / batch  # d^T P d
    mean_a = a.mean(axis=1)
    return BatchNormLayer(
        batch=batch,
        trace_identity=trace_identity,
        trace_centred=trace_identity - d_p_d / batch,  # tr(D G D P) = tr(D^2 P) - d^T P d / B
        spread=squared_length / (batch - 1),
        second_moment=float(np.mean(a**2)),
        mean=float(np.mean(a)),
        centred_variance=float(np.mean(np.mean(a**2, axis=1) - mean_a**2)),
    )


def growth_per_layer(layer: BatchNormLayer) -> float:
    """The factor of |delta|^2 per layer deep in a stack of equal sigma_w^2 (independent of sigma_w^2 while
    eps is negligible beside the batch variance)."""
    return layer.backward_factor(1.0, below_batchnorm=True) / layer.centred_variance


def large_batch_growth(standard: Moments) -> float:
    """The B -> infinity limit E[f'(z)^2] / Var f(z) from the activation's moments at z ~ N(0, 1)."""
    return standard.derivative_squared / (standard.second - standard.mean**2)
