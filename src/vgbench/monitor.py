"""Per-layer gradient and activation statistics of a stack of MLPs: tensors in, numbers out.

Layers are the model's linear layers, numbered from the input (1) to the output (depth + 1). On a
measured step the loop passes a `Trace` to the forward pass (each layer's output z, with its gradient
kept, and each hidden activation's input u and output a) and, after the optimizer's step, calls
`measure` once: `table` computes every statistic of every run on the device, in float32 whatever the
autocast dtype, without waiting for the host (a CUDA graph captures it: vgbench.graphs), and
`measurements` brings the table to the host in one transfer, as one `Measurement` per run (or in two
halves: `send` starts the transfer, `received` waits for it and reads it, so that on a GPU the host can
record an earlier step while the device runs on).

For layer l of one run, with weights W_l, pre-activation z_l = W_l h_{l-1} + b_l and its mean-over-batch
loss L:
  grad_norm/weight   ||dL/dW_l||                  grad_norm/bias  ||dL/db_l||
  grad_to_weight     ||dL/dW_l|| / ||W_l||         update_ratio    ||W_l(after step) - W_l|| / ||W_l||
  delta_norm         mean_i ||d loss_i / d z_l,i||: the per-example error signal ("delta") at the layer's
                     output, averaged over the batch (B times the gradient of the batch mean; divided
                     by the fp16 loss scale when there is one)
and for each hidden layer, with a = f(u) and u the activation's input (z, or norm(z) with a norm):
  activation/mean, activation/std       of a over the batch and units
  activation/saturated                  fraction of (example, unit) with |f'(u)| < 1% of max |f'|
  activation/dead                       fraction of units whose a is 0 for every example of the batch
  preactivation/std                     std of u
Whole run: total_grad_norm over all its parameters; first_to_last_grad_ratio = ||dL/dW_1|| / ||dL/dW_out||,
the number that says "vanishing" when much smaller than 1; first_to_last_delta_ratio = delta_1 / delta_out,
the back-propagated error's own ratio (it does not share the weight gradient's factor ||h_{l-1}||).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vgbench.model import MLP, Trace
from vgbench.precision import Stepped

SATURATION_FRACTION = 0.01  # |f'| below this share of its maximum counts as saturated
# Hidden layers of one shape are stacked, this many values of u (and as many of a) at most, for their
# statistics: few operations for a deep narrow network on a CPU, and copies (with their temporaries, a few
# MB) that the memory planner's per-unit count (vgbench.memory) need not hold
STACKED_ELEMENTS = 2**17

LAYER_METRICS = ("grad_norm/weight", "grad_norm/bias", "grad_to_weight", "update_ratio", "delta_norm")
HIDDEN_METRICS = ("activation/mean", "activation/std", "activation/saturated", "activation/dead", "preactivation/std")
RUN_METRICS = ("total_grad_norm", "first_to_last_grad_ratio", "first_to_last_delta_ratio")


@dataclass
class Measurement:
    """One run's statistics at one step."""

    step: int
    layers: dict[str, list[float]]  # metric -> one value per layer, layer 1 first (hidden metrics: depth values)
    total_grad_norm: float
    first_to_last_grad_ratio: float
    first_to_last_delta_ratio: float
    extra: dict[str, float] = field(default_factory=dict)  # what the loop sent along (batch loss, ...)
    # 'grad/weight' (every layer) and 'activation' (hidden layers) -> one CPU tensor per layer; empty
    # unless histograms were asked for
    histograms: dict[str, list[Tensor]] = field(default_factory=dict)


@dataclass
class Sent:
    """A measured step's table (and histogram values) on their way to the host (`GradientMonitor.send`)."""

    step: int
    values: Tensor  # on the host: the table flattened, then the histogram values; pinned on a GPU
    shape: torch.Size  # the table's
    extra_names: list[str]
    histogram_sizes: list[int]
    done: torch.cuda.Event | None  # recorded after the copy on the device's stream; None when it was synchronous


def wide(t: Tensor) -> Tensor:
    """t in float32, or float64 if it is already: statistics never in bf16 or fp16, whose steps (0.004
    near 1 for bf16) are coarser than what they measure, and whose range (fp16: 65504) is too short."""
    return t if t.dtype == torch.float64 else t.float()


def run_norms(tensors: list[Tensor]) -> Tensor:
    """||t_k|| for each run k of each tensor [K, ...]: shape [len(tensors), K]."""
    return torch.stack([torch.linalg.vector_norm(wide(t), dim=tuple(range(1, t.dim()))) for t in tensors])


def delta_norms(grads: list[Tensor], per_example: float | Tensor) -> Tensor:
    """delta per layer and run, [len(grads), K]: the mean over a batch of each example's error norm
    ||d loss_i / d output_i||, from each layer's grad = dL/d(output) [K, B, ...] and
    `per_example`, what turns dL into d loss_i (B for a mean-reduced loss; divided by the loss scale under
    fp16). The norm is taken in float32 (see `wide`): B times an fp16 gradient of a 2^16-scaled loss
    overflows fp16."""
    norms = torch.stack([torch.linalg.vector_norm(wide(grad).flatten(2), dim=2) for grad in grads])
    return norms.mean(dim=2) * per_example


def std_mean(x: Tensor) -> tuple[Tensor, Tensor]:
    """The standard deviation (n - 1 in the denominator) and mean of x over its last dimension, in two passes:
    as exact as torch.std_mean, whose reduction over a few long rows takes several times as long on a CPU
    (the norm of the deviations is one fused pass, where squaring and summing them are two)."""
    mean = x.mean(dim=-1, keepdim=True)
    spread = torch.linalg.vector_norm(x - mean, dim=-1).div_(math.sqrt(x.shape[-1] - 1))
    return spread, mean.squeeze(-1)


def hidden_stats(ua: Tensor, saturated: Tensor) -> Tensor:
    """[mean a, std a, saturated fraction, dead fraction, std u] of hidden layers, per run: [5, *lead].
    ua: u and a stacked, [2, *lead, B, units], `lead` the runs ([K]: one layer of a stack) or layers and runs
    ([layers, K]: several layers of one shape at once); u and a side by side take one mean and one spread,
    not two of each. saturated: where |f'(u)| is below the threshold (`Activation.saturated` of u in float32:
    see `wide`), [*lead, B, units]."""
    ua = wide(ua)
    spread, mean = std_mean(ua.flatten(-2))
    saturated = saturated.flatten(-2).sum(dim=-1).to(ua.dtype) / (saturated.shape[-2] * saturated.shape[-1])
    # zero for every example: its largest and smallest are zero (two reductions; a == 0 over every value, a
    # boolean tensor as large as a, costs several times as much on a CPU)
    a = ua[1]
    dead = ((a.amax(dim=-2) == 0) & (a.amin(dim=-2) == 0)).to(ua.dtype).mean(dim=-1)
    return torch.stack([mean[1], spread[1], saturated, dead, spread[0]])


def by_shape(tensors: list[Tensor], max_elements: int) -> list[list[int]]:
    """The positions of `tensors`, grouped by shape and dtype (in order of first appearance), each group of
    at most `max_elements` in all (or one tensor): a group is stacked and measured in one set of operations
    instead of one per tensor, and its copies stay small."""
    groups: dict[tuple, list[list[int]]] = {}
    for index, t in enumerate(tensors):
        chunks = groups.setdefault((t.shape, t.dtype), [[]])
        if chunks[-1] and (len(chunks[-1]) + 1) * t.numel() > max_elements:
            chunks.append([])
        chunks[-1].append(index)
    return [chunk for chunks in groups.values() for chunk in chunks]


JACOBIAN_EXAMPLES = 8
SPECTRUM_QUANTILES = 41  # the singular values' distribution, kept as quantiles 0, 0.025, ..., 1


@torch.no_grad()
def jacobian_spectrum(model: MLP, x: Tensor, examples: int = JACOBIAN_EXAMPLES) -> list[dict[str, Any]]:
    """Per run, the singular values s of J = dh_L / dh_1, the input-output Jacobian of the hidden stack from
    the first hidden layer's output to the last's (square: width x width), on the first `examples` of its
    batch x [K, B, features]: mean and variance of s^2, the relative spread var(s^2) / mean(s^2)^2 (scale-free:
    a spectrum that vanishes whole is not concentrated), the largest s (Pennington et al. 2017: dynamical
    isometry is all s near 1), and the quantiles of s. Plain layers only (no norm, residual or dropout)."""
    f = model.activation
    spectra = []
    for run in range(model.stack):
        first = model.hidden[0].linear
        h1 = f(x[run, :examples].flatten(1).double() @ first.weight[run].double() + first.bias[run].double())

        def stack(h: Tensor, run: int = run) -> Tensor:
            for layer in model.hidden[1:]:
                h = f(h @ layer.linear.weight[run].double() + layer.linear.bias[run].double())
            return h

        jacobians = torch.func.vmap(torch.func.jacrev(stack))(h1)  # [examples, width, width]
        s = torch.linalg.svdvals(jacobians).flatten()
        quantiles = torch.quantile(s, torch.linspace(0, 1, SPECTRUM_QUANTILES, dtype=s.dtype, device=s.device))
        squared = s**2
        values = torch.cat([torch.stack([squared.mean(), squared.var(), s.max()]), quantiles]).cpu().tolist()
        spread = values[1] / values[0] ** 2 if values[0] > 0 else float("nan")
        spectra.append(
            {
                "mean_sq_singular": values[0],
                "var_sq_singular": values[1],
                "relative_spread": spread,
                "max_singular": values[2],
                "singular_quantiles": values[3:],
                "examples": int(h1.shape[0]),
            }
        )
    return spectra


class GradientMonitor:
    """Measures a stack of MLPs on chosen steps: step 0, every `every_n_steps`, and each epoch's last step."""

    def __init__(
        self, model: MLP, every_n_steps: int, histogram_every_n_steps: int = 0, jacobian: bool = False
    ) -> None:
        self.model = model
        self.jacobian = jacobian
        self.every_n_steps = every_n_steps
        self.histogram_every_n_steps = histogram_every_n_steps
        self.linears = model.linears()
        # where each weight sits in model.parameters(), the order the optimizer's updates come in
        positions = {id(p): index for index, p in enumerate(model.parameters())}
        self.weight_indices = [positions[id(linear.weight)] for linear in self.linears]
        in_linears = {id(p) for linear in self.linears for p in (linear.weight, linear.bias)}
        self.other_params = [p for p in model.parameters() if id(p) not in in_linears]  # norms' scales, shifts
        largest = model.activation.max_derivative
        # a function with f' = 0 everywhere (the binary step) is saturated everywhere
        self.saturation_threshold = SATURATION_FRACTION * largest if largest > 0 else float("inf")

    def due(self, step: int, last_of_epoch: bool = False) -> bool:
        return step % self.every_n_steps == 0 or last_of_epoch

    def histograms_due(self, step: int) -> bool:
        return self.histogram_every_n_steps > 0 and step % self.histogram_every_n_steps == 0

    @torch.no_grad()
    def weight_norms(self) -> Tensor:
        """||W_l|| of each layer and run, [layers, K]: taken before the optimizer's step, the denominator of
        grad_to_weight and update_ratio (after it, recovering W_l - update would take a pass more)."""
        return run_norms([linear.weight for linear in self.linears])

    @torch.no_grad()
    def measure(
        self,
        step: int,
        trace: Trace,
        stepped: Stepped,
        weight_norm: Tensor,
        extra: dict[str, Tensor] | None = None,
        histograms: bool = False,
    ) -> list[Measurement]:
        """Every statistic of every run at this step, after the optimizer's step (one host transfer): `table`,
        with the histograms' values when asked for, brought over by `measurements`.

        trace: the forward pass's record, backward done. stepped: the step's updates and loss scale.
        weight_norm: `weight_norms()` before the step. extra: more per-run values to bring along (each a [K]
        tensor), such as the batch loss.
        """
        extra = extra or {}
        table = self.table(trace, stepped, weight_norm, extra)
        return self.measurements(step, table, list(extra), self.histogram_values(trace) if histograms else [])

    @torch.no_grad()
    def table(self, trace: Trace, stepped: Stepped, weight_norm: Tensor, extra: dict[str, Tensor]) -> Tensor:
        """Every statistic of every run, [metrics, K] on the device (`measure`'s arguments). Nothing in it
        waits for the host: a measured step's CUDA graph captures it (vgbench.graphs)."""
        if len(trace.z) != len(self.linears) or any(z.grad is None for z in trace.z):
            raise RuntimeError("measure() needs a traced forward pass whose backward has run")
        stack, batch = trace.z[0].shape[:2]
        weight_grads = [self._grad(linear.weight) for linear in self.linears]
        others = [self._grad(linear.bias) for linear in self.linears] + [self._grad(p) for p in self.other_params]
        grad_norms = run_norms(weight_grads + others)  # every parameter's, [parameters, K]
        n_layers = len(self.linears)
        grad_w, grad_b = grad_norms[:n_layers], grad_norms[n_layers : 2 * n_layers]
        total = grad_norms.square().sum(dim=0).sqrt()
        kept = stepped.updates  # scale * direction: its norm without writing it out
        directions = [kept.directions[index] for index in self.weight_indices]
        # plain SGD steps along the gradients themselves: their norms are taken already
        same = all(direction is grad for direction, grad in zip(directions, weight_grads, strict=True))
        update = (grad_w if same else run_norms(directions)) * kept.run_scales(grad_w)
        # B * dL/dz is each example's own error: the loss is a mean over the batch
        per_example = batch if stepped.loss_scale is None else batch / stepped.loss_scale.float()
        deltas = delta_norms([z.grad for z in trace.z], per_example)
        hidden = self._hidden_stats(trace)
        rows = [
            grad_w,
            grad_b,
            grad_w / weight_norm,
            update / weight_norm,
            deltas,
            hidden,
            torch.stack([total, grad_w[0] / grad_w[-1], deltas[0] / deltas[-1]]),
        ]
        if extra:
            rows.append(torch.stack([wide(value.detach()).reshape(stack) for value in extra.values()]))
        return torch.cat([row.to(grad_w.dtype) for row in rows])

    @torch.no_grad()
    def histogram_values(self, trace: Trace) -> list[Tensor]:
        """Each run's weight gradients (every layer) and activations (hidden layers), flattened, in that order."""
        parts = []
        for run in range(trace.z[0].shape[0]):
            parts += [self._grad(linear.weight)[run].flatten() for linear in self.linears]
            parts += [a[run].flatten() for a in trace.a]
        return parts

    def measurements(
        self, step: int, table: Tensor, extra_names: list[str], histogram_values: list[Tensor]
    ) -> list[Measurement]:
        """`table` (with `extra_names` for its extra rows) and `histogram_values` as one Measurement per run,
        brought to the host in one transfer."""
        return self.received(self.send(step, table, extra_names, histogram_values))

    @torch.no_grad()
    def send(self, step: int, table: Tensor, extra_names: list[str], histogram_values: list[Tensor]) -> Sent:
        """Start `measurements`' one transfer. From a GPU, a table alone goes asynchronously: into pinned
        memory, after the step on the device's stream (so after the table is written, and before the next
        step's replay writes it again), and the host goes on at once; `received` waits for it. With histogram
        values (every run's gradients and activations, up to gigabytes: more than pinned memory should hold)
        the copy is synchronous, into pageable memory."""
        parts = [part.to(table.dtype) for part in histogram_values]
        values = torch.cat([table.flatten(), *parts])  # a copy: a CUDA graph writes each step's table in place
        done = None
        if values.is_cuda and not parts:
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            host.copy_(values, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        else:
            host = values.cpu()
        return Sent(step, host, table.shape, extra_names, [part.numel() for part in parts], done)

    def received(self, sent: Sent) -> list[Measurement]:
        """A `send`'s values, once on the host, as one Measurement per run."""
        if sent.done is not None:
            sent.done.synchronize()
        return self._per_run(sent)

    def _hidden_stats(self, trace: Trace) -> Tensor:
        """hidden_stats of every hidden layer, [5 * depth, K] layer by layer; layers of one shape stacked and
        measured at once, STACKED_ELEMENTS values at most together (by_shape)."""
        groups = by_shape(trace.u, STACKED_ELEMENTS)
        parts = []
        for layers in groups:
            # widened once, for the saturation test and the statistics alike
            ua = wide(torch.stack([trace.u[i] for i in layers] + [trace.a[i] for i in layers]))
            ua = ua.unflatten(0, (2, len(layers)))
            saturated = self.model.activation.saturated(ua[0], self.saturation_threshold)
            parts.append(hidden_stats(ua, saturated).transpose(0, 1))  # [layers, 5, K]
        order = [layer for layers in groups for layer in layers]
        if order == sorted(order):
            stats = torch.cat(parts)
        else:  # widths that come back (256, 128, 256): back in layer order (no index tensor: one would be copied
            # from the host, which a CUDA graph's capture does not allow)
            by_layer = dict(zip(order, (row for part in parts for row in part), strict=True))
            stats = torch.stack([by_layer[layer] for layer in range(len(order))])
        return stats.flatten(0, 1)

    @staticmethod
    def _grad(param: Tensor) -> Tensor:
        return param.grad if param.grad is not None else torch.zeros_like(param)

    def _per_run(self, sent: Sent) -> list[Measurement]:
        n_layers, depth = len(self.linears), len(self.model.hidden)
        pieces = sent.values.split([sent.shape.numel(), *sent.histogram_sizes])
        table = pieces[0].view(sent.shape).t().tolist()  # one row of values per run
        histograms = list(pieces[1:])
        per_run_histograms = n_layers + depth if sent.histogram_sizes else 0  # each layer's gradient, each hidden a
        measurements = []
        for run, values in enumerate(table):
            layer_values, values = values[: len(LAYER_METRICS) * n_layers], values[len(LAYER_METRICS) * n_layers :]
            hidden_values, values = values[: len(HIDDEN_METRICS) * depth], values[len(HIDDEN_METRICS) * depth :]
            layers = {name: layer_values[i * n_layers : (i + 1) * n_layers] for i, name in enumerate(LAYER_METRICS)}
            # hidden rows were stacked layer by layer: [metric of layer 1, ..., metric of layer 2, ...]
            layers |= {name: hidden_values[i :: len(HIDDEN_METRICS)] for i, name in enumerate(HIDDEN_METRICS)}
            total, grad_ratio, delta_ratio = values[:3]
            mine = histograms[run * per_run_histograms : (run + 1) * per_run_histograms]
            measurements.append(
                Measurement(
                    step=sent.step,
                    layers=layers,
                    total_grad_norm=total,
                    first_to_last_grad_ratio=grad_ratio,
                    first_to_last_delta_ratio=delta_ratio,
                    extra=dict(zip(sent.extra_names, values[3:], strict=True)),
                    histograms={"grad/weight": mine[:n_layers], "activation": mine[n_layers:]} if mine else {},
                )
            )
        return measurements
