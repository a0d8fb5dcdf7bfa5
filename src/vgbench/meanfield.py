"""Mean-field maps of plain wide random layers: the length, correlation and gradient maps and their fixed points.

Pure computation, no I/O; vgbench.theory composes these maps into a network's prediction. For an MLP whose
layer l has weights W_l with entries of variance sigma_w,l^2 / fan_in(l) and biases of variance
sigma_b,l^2, in the limit of wide layers (Poole et al. 2016,
"Exponential expressivity in deep neural networks through transient chaos"; Schoenholz et al. 2017, "Deep
information propagation"; Pennington, Schoenholz and Ganguli 2017, "Resurrecting the sigmoid in deep learning
through dynamical isometry"):

  forward, the length map       q^l = sigma_w,l^2 E[f(sqrt(q^{l-1}) z)^2] + sigma_b,l^2,   z ~ N(0, 1)
                                started from the data: q^1 = sigma_w,1^2 q_0 + sigma_b,1^2, q_0 = E[x_i^2];
                                its fixed point q* (iterating the map)
  backward, per hidden layer    chi^l = sigma_w,l+1^2 E[f'(sqrt(q^l) z)^2]: the factor by which the squared
                                back-propagated error ||delta||^2 changes from layer l+1 to layer l (the
                                weights it passes back through are layer l+1's)
                                so ||delta_l|| / ||delta_out|| = sqrt(prod_{k=l}^{L} chi^k)
  at the fixed point            chi_1 = sigma_w^2 E[f'(sqrt(q*) z)^2]: < 1 ordered (gradients vanish),
                                > 1 chaotic (they explode), = 1 critical
  correlations                  c^l = (sigma_w^2 E[f(u_1) f(u_2)] + sigma_b^2) / q*, u_1 = sqrt(q*) z_1,
                                u_2 = sqrt(q*) (c z_1 + sqrt(1 - c^2) z_2); its stable fixed point c*;
                                chi_c = sigma_w^2 E[f'(u_1) f'(u_2)] at c*, and the depth scale
                                xi_c = -1 / ln chi_c (Schoenholz et al., eq. 9): signals and gradients
                                travel about xi_c layers; networks train when depth < about 6 xi_c
  the length's depth scale      xi_q = -1 / ln(dq^l/dq^{l-1} at q*)
  dropout (keep = 1 - rate)     inverted dropout divides E[f^2] and E[f'^2] by keep; two inputs draw
                                independent masks, so the correlation map does not, and c* < 1

Expectations are quadrature of the activation's own f and f' from the registry, in float64. Over one z:
Gauss-Legendre on [-12, 0] and [0, 12] separately (QUADRATURE_POINTS nodes each), so the kink at 0 of
ReLU-like units is a panel edge and E relu(z) = 1 / sqrt(2 pi) comes out to machine precision (one
Gauss-Hermite rule over the whole line misses it by about 1e-3). Over a pair (z_1, z_2): Gauss-Hermite
(probabilists', QUADRATURE_POINTS nodes per dimension; the number is even, so no node sits on the kink).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

from vgbench.activations import Activation

QUADRATURE_POINTS = 100
UNBOUNDED = 1e12  # a length past this has no finite fixed point: it grows without bound
FIXED_POINT_ITERATIONS = 1000


@cache
def _nodes() -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for E over N(0, 1): weights sum to 1."""
    nodes, weights = hermegauss(QUADRATURE_POINTS)
    return nodes, weights / math.sqrt(2 * math.pi)


def _f(activation: Activation, u: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return activation(torch.as_tensor(u, dtype=torch.float64)).numpy()


def _df(activation: Activation, u: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return activation.derivative(torch.as_tensor(u, dtype=torch.float64)).numpy()


@cache
def _line_nodes() -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E over N(0, 1): Gauss-Legendre on each half of [-12, 12], times the density."""
    nodes, weights = leggauss(QUADRATURE_POINTS)
    half, half_weights = 6.0 * (nodes + 1), 6.0 * weights  # [-1, 1] -> [0, 12]
    nodes, weights = np.concatenate([-half[::-1], half]), np.concatenate([half_weights[::-1], half_weights])
    return nodes, weights * np.exp(-(nodes**2) / 2) / math.sqrt(2 * math.pi)


def gaussian_mean(g: Any, q: float) -> float:  # g: array -> array
    """E[g(sqrt(q) z)], z ~ N(0, 1)."""
    nodes, weights = _line_nodes()
    return float(np.dot(weights, g(math.sqrt(max(q, 0.0)) * nodes)))


def length_map(activation: Activation, q: float, sigma_w2: float, sigma_b2: float, keep: float = 1.0) -> float:
    """q -> sigma_w^2 E[f(sqrt(q) z)^2] / keep + sigma_b^2 (keep = 1 - dropout: inverted dropout scales the
    kept units by 1 / keep, so their second moment by 1 / keep)."""
    return sigma_w2 * gaussian_mean(lambda u: _f(activation, u) ** 2, q) / keep + sigma_b2


def chi(activation: Activation, q: float, sigma_w2: float, keep: float = 1.0) -> float:
    """sigma_w^2 E[f'(sqrt(q) z)^2] / keep: the per-layer factor of the squared back-propagated error."""
    return sigma_w2 * gaussian_mean(lambda u: _df(activation, u) ** 2, q) / keep


def fixed_point(activation: Activation, sigma_w2: float, sigma_b2: float, q0: float = 1.0, keep: float = 1.0) -> float:
    """q*: the length map iterated from q0 until it settles (infinite where it grows without bound, as for
    ReLU with chi_1 > 1)."""
    q = q0
    for _ in range(FIXED_POINT_ITERATIONS):
        new = length_map(activation, q, sigma_w2, sigma_b2, keep)
        if not math.isfinite(new) or new > UNBOUNDED:
            return math.inf
        if abs(new - q) <= 1e-12 * max(1.0, q):
            return new
        q = new
    return q


def _pair_mean(g: Any, q: float, c: float) -> float:  # g: (u1, u2) -> array
    """E[g(u_1, u_2)] for u_1 = sqrt(q) z_1, u_2 = sqrt(q) (c z_1 + sqrt(1 - c^2) z_2)."""
    nodes, weights = _nodes()
    z1, z2 = np.meshgrid(nodes, nodes, indexing="ij")
    w = np.outer(weights, weights)
    root = math.sqrt(max(q, 0.0))
    u1, u2 = root * z1, root * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2)
    return float(np.sum(w * g(u1, u2)))


def correlation_map(activation: Activation, c: float, q_star: float, sigma_w2: float, sigma_b2: float) -> float:
    pair = _pair_mean(lambda a, b: _f(activation, a) * _f(activation, b), q_star, c)
    return (sigma_w2 * pair + sigma_b2) / q_star


def correlation_fixed_point(activation: Activation, q_star: float, sigma_w2: float, sigma_b2: float) -> float:
    """c*: the correlation map iterated from c = 0.5 (two inputs half correlated) until it settles. Two inputs
    draw independent dropout masks, so with dropout the map has no 1 / keep and c* < 1: the critical point
    is gone (Schoenholz et al. 2017, section 6)."""
    c = 0.5
    for _ in range(FIXED_POINT_ITERATIONS):
        new = min(1.0, correlation_map(activation, c, q_star, sigma_w2, sigma_b2))
        if abs(new - c) < 1e-10:
            return new
        c = new
    return c


def chi_c(activation: Activation, q_star: float, c_star: float, sigma_w2: float) -> float:
    return sigma_w2 * _pair_mean(lambda a, b: _df(activation, a) * _df(activation, b), q_star, c_star)


def depth_scale(factor: float) -> float:
    """-1 / ln(factor): layers over which a perturbation shrinking by `factor` per layer fades by e (infinite at
    1; a factor above 1 at a fixed point that is not stable has none: nan)."""
    if factor <= 0:
        return 0.0
    if abs(math.log(factor)) < 1e-12:
        return math.inf
    return -1 / math.log(factor) if factor < 1 else math.nan


@dataclass
class Phase:
    """The mean-field state of a deep stack of one (sigma_w^2, sigma_b^2)."""

    q_star: float
    chi_1: float
    c_star: float
    chi_c: float
    xi_c: float  # correlation depth scale: networks train to about 6 xi_c layers
    xi_q: float

    @property
    def regime(self) -> str:
        return regime(self.chi_1)


def regime(factor: float) -> str:
    """The kind of flow a per-layer factor of ||delta||^2 makes in a deep stack."""
    return "ordered (vanishing)" if factor < 0.999 else "chaotic (exploding)" if factor > 1.001 else "critical"


def phase(activation: Activation, sigma_w2: float, sigma_b2: float, q0: float = 1.0, keep: float = 1.0) -> Phase:
    """The stack's state at its fixed point (with dropout: keep = 1 - rate). Where q grows without bound, chi
    is taken at q = UNBOUNDED (for ReLU-like units it does not depend on q) and c* = 1."""
    q_star = fixed_point(activation, sigma_w2, sigma_b2, q0, keep)
    q = min(q_star, UNBOUNDED)
    if q <= 0:
        return Phase(q_star, 0.0, 1.0, 0.0, 0.0, 0.0)
    if not math.isfinite(q_star):  # no stable length: no depth scales either
        chi_1 = chi(activation, q, sigma_w2, keep)
        return Phase(q_star, chi_1, 1.0, chi_1, math.nan, math.nan)
    c_star = correlation_fixed_point(activation, q, sigma_w2, sigma_b2)
    slope = (
        length_map(activation, q * 1.001, sigma_w2, sigma_b2, keep)
        - length_map(activation, q * 0.999, sigma_w2, sigma_b2, keep)
    ) / (0.002 * q)
    correlation_chi = chi_c(activation, q, c_star, sigma_w2)
    return Phase(
        q_star,
        chi(activation, q, sigma_w2, keep),
        c_star,
        correlation_chi,
        depth_scale(correlation_chi),
        depth_scale(slope),
    )


def critical_sigma_w2(activation: Activation, sigma_b2: float, low: float = 0.1, high: float = 20.0) -> float | None:
    """The sigma_w^2 where chi_1 = 1 for this sigma_b^2 (bisection; chi_1 grows with sigma_w^2)."""

    def excess(sigma_w2: float) -> float:
        return chi(activation, min(fixed_point(activation, sigma_w2, sigma_b2), UNBOUNDED), sigma_w2) - 1

    if excess(low) > 0 or excess(high) < 0:
        return None
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if excess(middle) < 0 else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Moments:
    """Gaussian moments of an activation at u ~ N(0, q): what a layer's forward and backward maps need."""

    mean: float  # E f(u)
    second: float  # E f(u)^2
    fourth: float  # E f(u)^4
    derivative_squared: float  # E f'(u)^2
    derivative_fourth: float  # E f'(u)^4
    cross: float  # E f(u)^2 f'(u)^2
    u2_derivative_squared: float  # E u^2 f'(u)^2 / q: layer norm's projection removes this much of the error


def moments(activation: Activation, q: float) -> Moments:
    """The activation's Moments at u ~ N(0, q), by quadrature."""
    return Moments(
        gaussian_mean(lambda u: _f(activation, u), q),
        gaussian_mean(lambda u: _f(activation, u) ** 2, q),
        gaussian_mean(lambda u: _f(activation, u) ** 4, q),
        gaussian_mean(lambda u: _df(activation, u) ** 2, q),
        gaussian_mean(lambda u: _df(activation, u) ** 4, q),
        gaussian_mean(lambda u: _f(activation, u) ** 2 * _df(activation, u) ** 2, q),
        gaussian_mean(lambda u: u**2 * _df(activation, u) ** 2, q) / max(q, 1e-300),
    )
