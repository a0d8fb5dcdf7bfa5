"""The mean-field prediction for a vgbench network at initialisation, option by option, and `vgbench-theory`.

Pure computation (the command line at the end prints it). The maps of plain wide layers are in
vgbench.meanfield, the batch-normalised layer in vgbench.meanfield_batchnorm; here they are composed layer by
layer for the MLP vgbench builds, h_l = [h_{l-1} +] dropout(f(norm(W_l h_{l-1} + b_l))), the skip wherever
the widths match. Forward, per example and averaged over units: q_h = E h^2, m_h = E h and v_h the
batch-centred E (h - mean over the batch)^2 of each layer's input, starting from the data's. Backward, with
g_l = dL/dh_l and delta_l = dL/dz_l (the monitor's delta, z_l = W_l h_{l-1} + b_l), in the wide limit with
independent weights forward and back (the usual gradient-independence assumption):

  |delta_l|^2 = A_l |g_l|^2,    |g_{l-1}|^2 = [|g_l|^2 if layer l adds its input] + sigma_w,l^2 |delta_l|^2,
  starting from |g_L|^2 = sigma_w,out^2 |delta_out|^2, so the profile |delta_l| / |delta_out| follows. With
  keep = 1 - dropout, and z ~ N(0, q_z), q_z = sigma_w,l^2 q_h + sigma_b,l^2:

  plain         A = E f'(z)^2 / keep; the forward sets q_z of the next layer from E f(z)^2 / keep
                (Poole et al. 2016; Schoenholz et al. 2017; with dropout their section 6: the critical point
                is gone and xi_c stays finite at every sigma_w^2)
  layer norm    u = (z - mean) / std over the layer's units is N(0, 1) whatever q_z, so
                A = E f'(u)^2 / keep * (1 - (1 + E[u^2 f'(u)^2] / E f'(u)^2) / n) / (q_z + eps): the 1 / std of
                the normalisation, and its projection, which removes the error's components along 1 and u
                (exactly orthogonal: sum u = 0, |u|^2 = n)
  batch norm    A from vgbench.meanfield_batchnorm (Yang et al. 2019): the error grows by a factor that does
                not depend on sigma_w^2, pi / (pi - 1) per layer for ReLU at large batch
  residual      the stream adds: q_h <- q_h + 2 m_h E f + E f^2 / keep, m_h <- m_h + E f (z is independent
                of the unit's own h), v_h <- v_h + v_f; backward |g_{l-1}|^2 = (1 + sigma_w^2 A) |g_l|^2:
                for bounded f, E f'^2 falls as q_h grows with depth and the growth is sub-exponential; for
                ReLU sigma_w^2 A is constant and it is exponential (Yang and Schoenholz 2017). That is the
                infinite-width limit (mean_field_delta_ratio), which a ReLU stream nears only as ln n: the
                profile and its spread across seeds come from vgbench.montecarlo at the run's own sizes

The spread across seeds at finite width (Hanin 2018; Hanin and Nica 2019): one example's
|delta_l|^2 / |delta_{l+1}|^2 = (sigma_w^2 / n_l) sum_i f'(z_i)^2 xi_i^2 with xi_i ~ N(0, 1) from the
weights above, so Var ln of it = (3 E f'^4 - (E f'^2)^2) / (E f'^2)^2 / n_l and Var ln(delta_1 / delta_out)
= 1/4 sum_l of these: 5/4 sum_l 1 / n_l for ReLU (E f'^2 = E f'^4 = 1/2), whatever the init. It is one
example's spread; a batch's mean error varies less where its examples differ.

Where no theory exists (the binary step, whose f' is 0; softmax, which couples the units) `predict` says so.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from vgbench import meanfield as mf
from vgbench import montecarlo
from vgbench.activations import Activation
from vgbench.losses import LOSSES
from vgbench.meanfield_batchnorm import EPS, BatchNormLayer, batchnorm_layer, growth_per_layer, large_batch_growth
from vgbench.model import BIAS_INITS, WEIGHT_INITS, bias_scheme

TRAINABLE_DEPTH_SCALES = 6  # Schoenholz et al.: networks train when depth < about 6 xi_c
UNKNOWN_WIDTH = 1 << 30  # no sizes given: no skips, no projection, and no finite-width spread to predict
GROWTH_THRESHOLD = 100.0  # the depth at which the predicted delta_1 / delta_out first passes 100 (or 1 / 100)


@dataclass(frozen=True)
class Options:
    """Everything besides the layers' variances that the prediction depends on: the MLP's options and the
    data's first two moments (batch norm's first layer normalises the data's spread across the batch)."""

    norm: str = "none"  # none, batchnorm, layernorm
    residual: bool = False  # skip connections wherever a layer's input and output widths match
    keep: float = 1.0  # 1 - dropout
    batch_size: int = 64
    input_mean: float = 0.0  # E x_i
    feature_variance: float | None = None  # mean over features of Var x_i (None: E x_i^2 - (E x_i)^2)
    loss: str = "cross_entropy"  # sets the error at the output, which a ReLU stream with skips feels


def not_applicable_function(activation: Activation) -> str | None:
    """Why the theory does not describe a network of this activation (None when it does)."""
    if activation.name == "softmax":
        return "softmax couples the units of a layer; the theory needs an elementwise activation"
    if activation.max_derivative == 0:
        return f"{activation.name} has f' = 0 wherever it exists: nothing propagates back"
    return None


def options(cfg: Any, input_mean: float = 0.0, feature_variance: float | None = None) -> Options:  # the run's config
    return Options(
        cfg.model.norm,
        bool(cfg.model.residual),
        1.0 - cfg.model.dropout,
        cfg.data.batch_size,
        input_mean,
        feature_variance,
        cfg.loss,
    )


def layer_variances(cfg: Any, activation: Activation, sizes: Sequence[int]) -> list[tuple[float, float]]:
    """(sigma_w^2, sigma_b^2) of every linear layer, from the init registries (non-square layers as they are:
    Xavier on 784 -> 128 gives sigma_w^2 = 784 * 2 / (784 + 128) = 1.72, not 1)."""
    weight = WEIGHT_INITS[cfg.model.init]
    bias = BIAS_INITS[bias_scheme(cfg.model.bias_init, cfg.model.init)]
    return [
        (weight.variance(fan_in, fan_out, activation, cfg.model) * fan_in, bias.variance(fan_in, cfg.model.bias_std))
        for fan_in, fan_out in zip(sizes, sizes[1:], strict=False)
    ]


def predict(
    cfg: Any,
    activation: Activation,
    sizes: Sequence[int],
    q0: float,
    input_mean: float = 0.0,
    feature_variance: float | None = None,
) -> dict[str, Any]:
    """The step-0 prediction for a model with layer sizes [in, hidden..., out] on data with E[x_i^2] = q0 (see
    `predict_from_variances`)."""
    return predict_from_variances(
        activation, layer_variances(cfg, activation, sizes), q0, sizes, options(cfg, input_mean, feature_variance)
    )


@dataclass
class _Layer:
    q: float  # E z^2 of the layer's linear output
    backward: float  # A: |delta_l|^2 / |g_l|^2
    adds_input: bool
    moments: mf.Moments  # of the activation's input


def _propagate(
    activation: Activation,
    variances: Sequence[tuple[float, float]],
    q0: float,
    sizes: Sequence[int],
    opts: Options,
    batchnorm: BatchNormLayer | None,
) -> list[_Layer]:
    """The forward pass of the module docstring, layer by layer, with each layer's backward factor A
    (`batchnorm`: the activation's batch-normalised layer at opts.batch_size, where opts.norm is batchnorm)."""
    depth = len(variances) - 1
    adds = [opts.residual and sizes[l] == sizes[l + 1] for l in range(depth)]  # noqa: E741
    standard = mf.moments(activation, 1.0)  # at u ~ N(0, 1): what batch and layer norm feed the activation
    q_h, m_h = q0, opts.input_mean
    v_h = (q0 - opts.input_mean**2 if opts.feature_variance is None else opts.feature_variance) * (
        1 - 1 / opts.batch_size  # the batch's own (biased) variance, as batch norm computes it
    )
    layers = []
    for l, (sigma_w2, sigma_b2) in enumerate(variances[:-1]):  # noqa: E741
        q_z = sigma_w2 * q_h + sigma_b2
        if batchnorm is not None:
            moments = replace(standard, mean=batchnorm.mean, second=batchnorm.second_moment)
            below_batchnorm = l + 1 < depth and not adds[l + 1]
            backward = batchnorm.backward_factor(sigma_w2 * v_h, below_batchnorm)
            centred = batchnorm.second_moment / opts.keep - (batchnorm.second_moment - batchnorm.centred_variance)
        else:
            moments = standard if opts.norm == "layernorm" else mf.moments(activation, q_z)
            backward = moments.derivative_squared
            if opts.norm == "layernorm":
                kept = 1 - (1 + moments.u2_derivative_squared / moments.derivative_squared) / sizes[l + 1]
                backward *= kept / (q_z + EPS)
            centred = moments.second / opts.keep - moments.mean**2
        layers.append(_Layer(q_z, backward / opts.keep, adds[l], moments))
        second = moments.second / opts.keep
        if adds[l]:
            q_h, m_h, v_h = q_h + 2 * m_h * moments.mean + second, m_h + moments.mean, v_h + centred
        else:
            q_h, m_h, v_h = second, moments.mean, centred
    return layers


def predict_from_variances(
    activation: Activation,
    variances: Sequence[tuple[float, float]],
    q0: float,
    sizes: Sequence[int] | None = None,
    opts: Options = Options(),  # noqa: B008 (frozen: one shared default is safe)
) -> dict[str, Any]:
    """The prediction for layers of given (sigma_w^2, sigma_b^2), input layer first (a config's, from
    layer_variances, or a watched network's own weights'), on data with E[x_i^2] = q0: per hidden layer E z^2
    and the factor of |delta|^2 from the layer above ("chi"), the back-propagated error profile relative to
    the output layer's and its first-to-last ratio; the stack's per-layer growth and regime; for plain layers
    (with or without dropout) chi_1, xi_c and the trainable depth; for batch norm its growth at this batch
    size and at large batch; for plain layers the predicted spread of ln(delta_1 / delta_out) across seeds.
    A stream with skips (without batch norm) takes its profile and spread from random networks of these sizes
    (vgbench.montecarlo) and keeps the mean-field limit's ratio as mean_field_delta_ratio.
    `sizes` (default: all equal) decide where skips apply, layer norm's projection and the spread."""
    reason = not_applicable_function(activation)
    if reason:
        return {"applies": False, "reason": reason}
    if opts.norm == "batchnorm" and opts.batch_size < 2:
        return {"applies": False, "reason": "batch norm of a single example is not defined (data.batch_size=1)"}
    depth = len(variances) - 1
    sizes = list(sizes) if sizes is not None else [0, *[UNKNOWN_WIDTH] * depth, 0]
    batchnorm = batchnorm_layer(activation, opts.batch_size) if opts.norm == "batchnorm" else None
    layers = _propagate(activation, variances, q0, sizes, opts, batchnorm)
    squared = [1.0]  # |delta_l|^2 / |delta_out|^2, from the output back
    stream = variances[-1][0]  # |g_L|^2 / |delta_out|^2
    for l in reversed(range(depth)):  # noqa: E741
        squared.insert(0, layers[l].backward * stream)
        stream = (stream if layers[l].adds_input else 0.0) + variances[l][0] * squared[0]
    limit = math.sqrt(squared[0])
    finite = None
    if any(layer.adds_input for layer in layers) and batchnorm is None:
        finite = _finite_width_profile(activation, tuple(variances), q0, tuple(sizes), opts)
        if finite is not None:
            squared = [d * d for d in finite.profile]
    chis = [squared[l] / squared[l + 1] if squared[l + 1] else 0.0 for l in range(depth)]  # noqa: E741
    growth = mean_growth(squared) or chis[0]
    hidden = variances[1] if depth > 1 else variances[0]
    result = {
        "applies": True,
        "options": {"norm": opts.norm, "residual": opts.residual, "dropout": 1 - opts.keep},
        "q": [layer.q for layer in layers],
        "chi": chis,
        "delta_profile": [math.sqrt(s) for s in squared],  # layer 1 first, the output layer (1.0) last
        "delta_ratio": math.sqrt(squared[0]),
        "sigma_w2": hidden[0],
        "sigma_b2": hidden[1],
        "growth_per_layer": growth,  # |delta|^2's factor per layer, mean_growth of the profile
        "depth_to_threshold": depth_to_threshold(growth),
        "regime": mf.regime(growth),
    }
    if finite is not None:
        result |= {
            "mean_field_delta_ratio": limit,
            "finite_width_networks": finite.networks,
            "log_ratio_std": finite.log_ratio_std,
            "sum_inverse_widths": sum(1 / n for n in sizes[1:-1]),
        }
    if batchnorm is not None:
        result |= {
            "batch_size": opts.batch_size,
            "batchnorm_growth": growth_per_layer(batchnorm),
            "large_batch_growth": large_batch_growth(mf.moments(activation, 1.0)),
        }
    if opts.norm == "none" and not any(layer.adds_input for layer in layers):
        state = mf.phase(activation, *hidden, q0=layers[-1].q, keep=opts.keep)
        result |= {
            "q_star": state.q_star,
            "chi_1": state.chi_1,
            "chi_c": state.chi_c,
            "xi_c": state.xi_c,
            "xi_q": state.xi_q,
            "regime": state.regime,
            "trainable_depth": TRAINABLE_DEPTH_SCALES * state.xi_c,  # 6 xi_c
            "trainable": depth < TRAINABLE_DEPTH_SCALES * state.xi_c,
        }
        if opts.keep == 1.0 and UNKNOWN_WIDTH not in sizes[1:-1]:
            result["log_ratio_std"] = math.sqrt(seed_variance(activation, variances, result["q"], sizes[1:-1]))
            result["sum_inverse_widths"] = sum(1 / n for n in sizes[1:-1])
    return result


@functools.lru_cache(maxsize=64)  # a stack's runs share one shape
def _finite_width_profile(
    activation: Activation,
    variances: tuple[tuple[float, float], ...],
    q0: float,
    sizes: tuple[int, ...],
    opts: Options,
) -> montecarlo.ErrorProfile | None:
    """A stream with skips at its own width (vgbench.montecarlo: there the mean-field limit comes only as
    ln n); None where that has no Monte Carlo."""
    return montecarlo.error_profile(
        activation, variances, sizes, q0, opts.norm, True, opts.keep, LOSSES[opts.loss], opts.batch_size
    )


def depth_to_threshold(growth: float) -> float:
    """Layers over which the error changes GROWTH_THRESHOLD-fold at `growth` per layer of |delta|^2 (infinite
    at 1)."""
    log = abs(math.log(growth)) if growth > 0 else math.inf
    return 2 * math.log(GROWTH_THRESHOLD) / log if log > 0 else math.inf


def seed_variance(
    activation: Activation, variances: Sequence[tuple[float, float]], q: Sequence[float], widths: Sequence[int]
) -> float:
    """Var ln(delta_1 / delta_out) across weight draws for one example: hidden layers of E z^2 = q and these
    widths (Hanin 2018; module docstring), to first order in 1 / n:
      backward  each layer's sum over its n_l units: (3 E f'^4 - (E f'^2)^2) / (E f'^2)^2 / n_l
      forward   each layer's E z^2 is itself a mean over the n_{l-1} units below, so it wanders, ln q_l by
                eps_l with Var eps_l = (1 - sigma_b^2 / q_l)^2 Var f^2 / (E f^2)^2 / n_{l-1}; the wander carries
                up through the length map (slope a_l = d ln q_{l+1} / d ln q_l) and moves every factor above
                it by s_l = d ln E f'^2 / d ln q: zero for ReLU-like units, whose f' ignores scale
      between   layer k-1's units make both its backward sum and eps_k: their covariance is
                (1 - sigma_b^2 / q_k) Cov(f^2, f'^2) / (E f^2 E f'^2) / n_{k-1}
    Var = 1/4 [sum_l backward_l + sum_k (Var eps_k S_k^2 + 2 Cov_k S_k)],
    S_k = sum_{l >= k} s_l prod_{k <= j < l} a_j."""
    here = [mf.moments(activation, q_l) for q_l in q]
    backward = sum(
        (3 * m.derivative_fourth - m.derivative_squared**2) / m.derivative_squared**2 / n
        for m, n in zip(here, widths, strict=True)
    )
    step = 1e-3  # relative, for the slopes in ln q
    up, down = (
        [mf.moments(activation, q_l * (1 + step)) for q_l in q],
        [mf.moments(activation, q_l * (1 - step)) for q_l in q],
    )
    slope_df2 = [
        math.log(u.derivative_squared / d.derivative_squared) / (2 * step) for u, d in zip(up, down, strict=True)
    ]
    slope_q = [
        sigma_w2 * (u.second - d.second) / (2 * step) / q_next
        for (sigma_w2, _), u, d, q_next in zip(variances[1:], up, down, q[1:], strict=False)
    ]  # a_l = d ln q_{l+1} / d ln q_l
    forward = 0.0
    for k in range(1, len(q)):  # layer 1's E z^2 is fixed by the example
        below = here[k - 1]
        share = 1 - variances[k][1] / q[k]  # of q_k that the units below make (the rest is the bias)
        wander = share**2 * (below.fourth - below.second**2) / below.second**2 / widths[k - 1]
        shared = share * (below.cross / (below.second * below.derivative_squared) - 1) / widths[k - 1]
        carried, reach = 1.0, 0.0
        for l in range(k, len(q)):  # noqa: E741
            reach += slope_df2[l] * carried
            carried *= slope_q[l] if l < len(slope_q) else 0.0
        forward += wander * reach**2 + 2 * shared * reach
    return 0.25 * (backward + forward)


def compare(prediction: dict[str, Any], measured_deltas: Sequence[float] | None) -> dict[str, Any]:
    """The prediction beside the step-0 measurement: measured profile relative to its output layer, the
    measured first-to-last delta ratio, measured / predicted, and the measured growth per layer (as
    growth_per_layer: the geometric mean over the hidden-to-hidden layers)."""
    if not prediction.get("applies") or not measured_deltas or not measured_deltas[-1]:
        return prediction
    measured = [d / measured_deltas[-1] for d in measured_deltas]
    ratio = measured[0]
    return prediction | {
        "measured_delta_profile": measured,
        "measured_delta_ratio": ratio,
        "measured_over_predicted": ratio / prediction["delta_ratio"] if prediction["delta_ratio"] else None,
        "measured_growth_per_layer": mean_growth([d * d for d in measured]),
    }


def mean_growth(squared: Sequence[float]) -> float | None:
    """The geometric mean of |delta_l|^2 / |delta_l+1|^2 over the hidden-to-hidden layers of a profile of
    squared errors (layer 1 first, the output last): without layer 1's and the last hidden layer's own
    factors, which the input and output layers set. None where an error is 0 or not finite."""
    inner = squared[:-1]
    inner = inner[1:] if len(inner) > 2 else inner
    if len(inner) < 2 or not all(s > 0 and math.isfinite(s) for s in inner):
        return None
    return (inner[0] / inner[-1]) ** (1 / (len(inner) - 1))


# --- the command line: vgbench-theory ---

PHASE_SIGMA_W2 = np.linspace(0.5, 4.0, 29)
PHASE_SIGMA_B2 = np.linspace(0.0, 0.3, 13)


def prediction_table(cfg: Any, activation: Activation, sizes: Sequence[int], prediction: dict[str, Any]) -> str:
    """A config's prediction as text: per layer, then the stack's state."""
    if not prediction["applies"]:
        return f"the mean-field theory does not apply: {prediction['reason']}"
    variances = layer_variances(cfg, activation, sizes)
    model = cfg.model
    lines = [
        f"{len(sizes) - 2} hidden layers of {activation.name}, init {model.init}, norm {model.norm}, "
        f"residual {model.residual}, dropout {model.dropout}",
        "",
        f"{'layer':>5} {'sigma_w^2':>9} {'sigma_b^2':>9} {'E z^2':>10} {'chi':>8} {'delta/out':>10}",
    ]
    for layer, (q, factor, delta) in enumerate(
        zip(prediction["q"], prediction["chi"], prediction["delta_profile"], strict=False), 1
    ):
        sigma_w2, sigma_b2 = variances[layer - 1]
        lines.append(f"{layer:>5} {sigma_w2:>9.3f} {sigma_b2:>9.3g} {q:>10.4g} {factor:>8.4f} {delta:>10.3e}")
    lines += [
        "",
        f"predicted first-to-last delta ratio: {prediction['delta_ratio']:.3e}; |delta|^2 changes by "
        f"{prediction['growth_per_layer']:.4f} per layer over these layers, {GROWTH_THRESHOLD:.0f}-fold in "
        f"{prediction['depth_to_threshold']:.3g} layers"
        + ("" if "chi_1" in prediction else f" ({prediction['regime']})"),
    ]
    if "batchnorm_growth" in prediction:
        lines.append(
            f"batch norm at batch {prediction['batch_size']}: {prediction['batchnorm_growth']:.4f} per layer deep "
            f"in the stack, {prediction['large_batch_growth']:.4f} at large batch (Yang et al. 2019)"
        )
    if "chi_1" in prediction:
        critical = mf.critical_sigma_w2(activation, prediction["sigma_b2"])
        lines += [
            f"stack (sigma_w^2 {prediction['sigma_w2']:.3f}, sigma_b^2 {prediction['sigma_b2']:.3g}): "
            f"chi_1 = {prediction['chi_1']:.4f}, {prediction['regime']}; q* = {prediction['q_star']:.4g}; "
            f"xi_c = {prediction['xi_c']:.3g} layers, xi_q = {prediction['xi_q']:.3g} layers; trainable to "
            f"about {TRAINABLE_DEPTH_SCALES} xi_c = {prediction['trainable_depth']:.3g} layers",
            f"critical sigma_w^2 at this sigma_b^2: {critical:.4f}"
            if critical and model.dropout == 0
            else "no critical sigma_w^2 at this sigma_b^2 and dropout",
        ]
    if "mean_field_delta_ratio" in prediction:
        lines.append(
            f"the profile is a Monte Carlo over {prediction['finite_width_networks']} random networks of this shape "
            f"(a stream with skips nears its mean-field limit only as ln(width)); the limit's ratio: "
            f"{prediction['mean_field_delta_ratio']:.3e}"
        )
    if "log_ratio_std" in prediction:
        across = "a batch" if "mean_field_delta_ratio" in prediction else "one example"
        lines.append(
            f"spread across seeds ({across}): std of ln(delta_1/delta_out) = {prediction['log_ratio_std']:.3f}"
        )
    return "\n".join(lines)


def phase_diagram(activation: Activation) -> Any:  # a matplotlib Figure
    """xi_c over (sigma_w^2, sigma_b^2), log colour scale, with the critical line chi_1 = 1."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    scales = np.array([[mf.phase(activation, w, b).xi_c for w in PHASE_SIGMA_W2] for b in PHASE_SIGMA_B2])
    critical = [(mf.critical_sigma_w2(activation, b), b) for b in PHASE_SIGMA_B2]
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
    features, classes, moments = data_shape(cfg.data, with_batch_spread=cfg.model.norm == "batchnorm")
    sizes = [features, *hidden_widths(cfg.model), classes]
    print(prediction_table(cfg, activation, sizes, predict(cfg, activation, sizes, *moments)))


if __name__ == "__main__":
    main()
