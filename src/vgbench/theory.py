"""Mean-field theory of signal propagation in wide random networks: what a measurement at step 0 should be.

Pure computation, no I/O. For an MLP whose layer l has weights W_l with entries of variance
sigma_w,l^2 / fan_in(l) and biases of variance sigma_b,l^2, in the limit of wide layers (Poole et al. 2016,
"Exponential expressivity in deep neural networks through transient chaos"; Schoenholz et al. 2017,
"Deep information propagation"; Pennington, Schoenholz and Ganguli 2017, "Resurrecting the sigmoid in
deep learning through dynamical isometry"):

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

Expectations over z are Gauss-Hermite quadrature (probabilists' Hermite, QUADRATURE_POINTS nodes per
dimension) of the activation's own f and f' from the registry, in float64. The number of nodes is even, so
no node sits on the kink at 0 of ReLU-like units: by symmetry their integrals are then exact. Where the
theory does not apply (batch or layer norm, residual connections, dropout, the binary step, softmax across
units) `predict` says so instead of predicting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
from numpy.polynomial.hermite_e import hermegauss

from vgbench.activations import Activation
from vgbench.model import BIAS_INITS, WEIGHT_INITS, bias_scheme

QUADRATURE_POINTS = 100
UNBOUNDED = 1e12  # a length past this has no finite fixed point: it grows without bound
FIXED_POINT_ITERATIONS = 1000
TRAINABLE_DEPTH_SCALES = 6  # Schoenholz et al.: networks train when depth < about 6 xi_c


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


def gaussian_mean(g: Any, q: float) -> float:  # g: array -> array
    """E[g(sqrt(q) z)], z ~ N(0, 1)."""
    nodes, weights = _nodes()
    return float(np.dot(weights, g(math.sqrt(max(q, 0.0)) * nodes)))


def length_map(activation: Activation, q: float, sigma_w2: float, sigma_b2: float) -> float:
    """q -> sigma_w^2 E[f(sqrt(q) z)^2] + sigma_b^2."""
    return sigma_w2 * gaussian_mean(lambda u: _f(activation, u) ** 2, q) + sigma_b2


def chi(activation: Activation, q: float, sigma_w2: float) -> float:
    """sigma_w^2 E[f'(sqrt(q) z)^2]: the per-layer factor of the squared back-propagated error."""
    return sigma_w2 * gaussian_mean(lambda u: _df(activation, u) ** 2, q)


def fixed_point(activation: Activation, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> float:
    """q*: the length map iterated from q0 until it settles (infinite where it grows without bound, as for
    ReLU with chi_1 > 1)."""
    q = q0
    for _ in range(FIXED_POINT_ITERATIONS):
        new = length_map(activation, q, sigma_w2, sigma_b2)
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
    """c*: the correlation map iterated from c = 0.5 (two inputs half correlated) until it settles."""
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
        return (
            "ordered (vanishing)" if self.chi_1 < 0.999 else "chaotic (exploding)" if self.chi_1 > 1.001 else "critical"
        )


def phase(activation: Activation, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> Phase:
    """The stack's state at its fixed point. Where q grows without bound, chi is taken at q = UNBOUNDED (for
    ReLU-like units it does not depend on q) and c* = 1."""
    q_star = fixed_point(activation, sigma_w2, sigma_b2, q0)
    q = min(q_star, UNBOUNDED)
    if q <= 0:
        return Phase(q_star, 0.0, 1.0, 0.0, 0.0, 0.0)
    if not math.isfinite(q_star):  # no stable length: no depth scales either
        chi_1 = chi(activation, q, sigma_w2)
        return Phase(q_star, chi_1, 1.0, chi_1, math.nan, math.nan)
    c_star = correlation_fixed_point(activation, q, sigma_w2, sigma_b2)
    slope = (
        length_map(activation, q * 1.001, sigma_w2, sigma_b2) - length_map(activation, q * 0.999, sigma_w2, sigma_b2)
    ) / (0.002 * q)
    correlation_chi = chi_c(activation, q, c_star, sigma_w2)
    return Phase(
        q_star, chi(activation, q, sigma_w2), c_star, correlation_chi, depth_scale(correlation_chi), depth_scale(slope)
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


# --- a vgbench model's prediction ---


def not_applicable_function(activation: Activation) -> str | None:
    """Why the theory does not describe a network of this activation (None when it does)."""
    if activation.name == "softmax":
        return "softmax couples the units of a layer; the theory needs an elementwise activation"
    if activation.max_derivative == 0:
        return f"{activation.name} has f' = 0 wherever it exists: nothing propagates back"
    return None


def not_applicable(cfg: Any, activation: Activation) -> str | None:  # the run's config
    """Why the theory does not describe this model (None when it does)."""
    reason = not_applicable_function(activation)
    if reason:
        return reason
    if cfg.model.norm != "none":
        return f"model.norm={cfg.model.norm} renormalises each layer; the theory describes plain layers"
    if cfg.model.residual:
        return "model.residual=true adds skip connections; the theory describes plain layers"
    if cfg.model.dropout > 0:
        return "model.dropout > 0 changes the forward signal; the theory describes the deterministic network"
    return None


def layer_variances(cfg: Any, activation: Activation, sizes: Sequence[int]) -> list[tuple[float, float]]:
    """(sigma_w^2, sigma_b^2) of every linear layer, from the init registries (non-square layers as they are:
    Xavier on 784 -> 128 gives sigma_w^2 = 784 * 2 / (784 + 128) = 1.72, not 1)."""
    weight = WEIGHT_INITS[cfg.model.init]
    bias = BIAS_INITS[bias_scheme(cfg.model.bias_init, cfg.model.init)]
    return [
        (weight.variance(fan_in, fan_out, activation, cfg.model) * fan_in, bias.variance(fan_in, cfg.model.bias_std))
        for fan_in, fan_out in zip(sizes, sizes[1:], strict=False)
    ]


def predict(cfg: Any, activation: Activation, sizes: Sequence[int], q0: float) -> dict[str, Any]:
    """The step-0 prediction for a model with layer sizes [in, hidden..., out] on data with E[x_i^2] = q0:
    q and chi per hidden layer, the back-propagated error profile (relative to the output layer's), its
    first-to-last ratio, and the stack's chi_1, xi_c and regime at the hidden layers' (sigma_w^2, sigma_b^2)."""
    reason = not_applicable(cfg, activation)
    if reason:
        return {"applies": False, "reason": reason}
    return predict_from_variances(activation, layer_variances(cfg, activation, sizes), q0)


def predict_from_variances(
    activation: Activation, variances: Sequence[tuple[float, float]], q0: float
) -> dict[str, Any]:
    """`predict` for layers of given (sigma_w^2, sigma_b^2), input layer first: a config's (layer_variances)
    or a watched network's own weights' (vgbench.watcher)."""
    q = [variances[0][0] * q0 + variances[0][1]]
    for sigma_w2, sigma_b2 in variances[1:-1]:
        q.append(length_map(activation, q[-1], sigma_w2, sigma_b2))
    chis = [chi(activation, q_l, variances[l + 1][0]) for l, q_l in enumerate(q)]  # noqa: E741
    squared = [1.0]  # ||delta_l||^2 / ||delta_out||^2, from the output back
    for factor in reversed(chis):
        squared.insert(0, squared[0] * factor)
    hidden = variances[1] if len(variances) > 2 else variances[0]
    state = phase(activation, *hidden, q0=q[-1])
    depth = len(variances) - 1
    return {
        "applies": True,
        "q": q,
        "chi": chis,
        "delta_profile": [math.sqrt(s) for s in squared],  # layer 1 first, the output layer (1.0) last
        "delta_ratio": math.sqrt(squared[0]),
        "sigma_w2": hidden[0],
        "sigma_b2": hidden[1],
        "q_star": state.q_star,
        "chi_1": state.chi_1,
        "chi_c": state.chi_c,
        "xi_c": state.xi_c,
        "xi_q": state.xi_q,
        "regime": state.regime,
        "trainable_depth": TRAINABLE_DEPTH_SCALES * state.xi_c,  # 6 xi_c
        "trainable": depth < TRAINABLE_DEPTH_SCALES * state.xi_c,
    }


def compare(prediction: dict[str, Any], measured_deltas: Sequence[float] | None) -> dict[str, Any]:
    """The prediction beside the step-0 measurement: measured profile relative to its output layer, the
    measured first-to-last delta ratio and measured / predicted."""
    if not prediction.get("applies") or not measured_deltas:
        return prediction
    out = measured_deltas[-1]
    measured = [d / out for d in measured_deltas] if out else None
    if measured is None:
        return prediction
    ratio = measured[0]
    return prediction | {
        "measured_delta_profile": measured,
        "measured_delta_ratio": ratio,
        "measured_over_predicted": ratio / prediction["delta_ratio"] if prediction["delta_ratio"] else None,
    }


# --- the command line: vgbench-theory ---

PHASE_SIGMA_W2 = np.linspace(0.5, 4.0, 29)
PHASE_SIGMA_B2 = np.linspace(0.0, 0.3, 13)


def prediction_table(cfg: Any, activation: Activation, sizes: Sequence[int], q0: float) -> str:
    """The prediction for a config as text: per layer, then the stack's state."""
    prediction = predict(cfg, activation, sizes, q0)
    if not prediction["applies"]:
        return f"the mean-field theory does not apply: {prediction['reason']}"
    variances = layer_variances(cfg, activation, sizes)
    lines = [
        f"{len(sizes) - 2} hidden layers of {activation.name}, init {cfg.model.init}, data q0 = E[x^2] = {q0:.3g}",
        "",
        f"{'layer':>5} {'sigma_w^2':>9} {'sigma_b^2':>9} {'q':>10} {'chi':>8} {'delta/out':>10}",
    ]
    for layer, (q, factor, delta) in enumerate(
        zip(prediction["q"], prediction["chi"], prediction["delta_profile"], strict=False), 1
    ):
        sigma_w2, sigma_b2 = variances[layer - 1]
        lines.append(f"{layer:>5} {sigma_w2:>9.3f} {sigma_b2:>9.3g} {q:>10.4g} {factor:>8.4f} {delta:>10.3e}")
    critical = critical_sigma_w2(activation, prediction["sigma_b2"])
    lines += [
        "",
        f"stack (sigma_w^2 {prediction['sigma_w2']:.3f}, sigma_b^2 {prediction['sigma_b2']:.3g}): "
        f"chi_1 = {prediction['chi_1']:.4f}, {prediction['regime']}; q* = {prediction['q_star']:.4g}; "
        f"xi_c = {prediction['xi_c']:.3g} layers, xi_q = {prediction['xi_q']:.3g} layers",
        f"predicted first-to-last delta ratio: {prediction['delta_ratio']:.3e}; trainable to about "
        f"{TRAINABLE_DEPTH_SCALES} xi_c = {TRAINABLE_DEPTH_SCALES * prediction['xi_c']:.3g} layers",
        f"critical sigma_w^2 at this sigma_b^2: {critical:.4f}"
        if critical
        else "no critical sigma_w^2 in [0.1, 20] at this sigma_b^2",
    ]
    return "\n".join(lines)


def phase_diagram(activation: Activation) -> Any:  # a matplotlib Figure
    """xi_c over (sigma_w^2, sigma_b^2), log colour scale, with the critical line chi_1 = 1."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    scales = np.array([[phase(activation, w, b).xi_c for w in PHASE_SIGMA_W2] for b in PHASE_SIGMA_B2])
    critical = [(critical_sigma_w2(activation, b), b) for b in PHASE_SIGMA_B2]
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    finite = np.where(np.isfinite(scales) & (scales > 0), scales, np.nan)
    scale = LogNorm(vmin=max(np.nanmin(finite), 0.1), vmax=min(np.nanmax(finite), 1e3))
    image = axes.pcolormesh(PHASE_SIGMA_W2, PHASE_SIGMA_B2, finite, shading="nearest", norm=scale)
    figure.colorbar(image, ax=axes, label="xi_c (layers)")
    points = [(w, b) for w, b in critical if w is not None]
    axes.plot([w for w, _ in points], [b for _, b in points], "w--", linewidth=2, label="critical: chi_1 = 1")
    axes.set_xlabel("sigma_w^2")
    axes.set_ylabel("sigma_b^2")
    axes.set_title(f"{activation.name}: correlation depth scale xi_c (ordered left, chaotic right)")
    axes.legend(loc="upper left")
    return figure


def main(argv: list[str] | None = None) -> None:
    """`vgbench-theory [--phase-diagram] [overrides]`: the prediction for a config, without training."""
    from pathlib import Path

    from vgbench.activations import activation_from_config
    from vgbench.config import compose_config, hidden_widths
    from vgbench.data import data_shape
    from vgbench.errors import CommandParser, UserError, exit_with_error
    from vgbench.validate import validate

    parser = CommandParser(
        prog="vgbench-theory",
        description="The mean-field prediction of a config's gradient "
        "flow at initialisation, layer by layer, without training (vgbench.theory).",
    )
    parser.add_argument(
        "--phase-diagram",
        action="store_true",
        help="draw the activation's (sigma_w^2, sigma_b^2) phase diagram into outputs/theory/ instead",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides, as for vgbench-train (activation=tanh model.depth=20 data=synthetic)",
    )
    args = parser.parse_args(argv)
    diagram, overrides = args.phase_diagram, args.overrides
    try:
        cfg = compose_config(overrides)
        validate(cfg)
    except UserError as error:
        exit_with_error(error)
    activation = activation_from_config(cfg.activation)
    if diagram:
        from vgbench.figures import save_figure

        path = Path("outputs") / "theory" / f"phase_diagram_{activation.name}.png"
        save_figure(phase_diagram(activation), path)
        print(f"phase diagram of {activation.name}: {path}")
        return
    features, classes, q0 = data_shape(cfg.data)
    print(prediction_table(cfg, activation, [features, *hidden_widths(cfg.model), classes], q0))


if __name__ == "__main__":
    main()
