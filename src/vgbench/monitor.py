"""Per-layer gradient and activation statistics of an MLP: tensors in, numbers out.

Layers are the model's Linear layers, numbered from the input (1) to the output (depth + 1). On a
measured step, while `capture()` is open, hooks record each hidden layer's activation statistics in
the forward pass and each layer's back-propagated error in the backward pass; after the optimizer's
step, `collect()` adds the gradient and update norms and brings everything to the host in one transfer.

For layer l with weights W_l, pre-activation z_l = W_l h_{l-1} + b_l and a mean-over-batch loss L:
  grad_norm/weight   ||dL/dW_l||                  grad_norm/bias  ||dL/db_l||
  grad_to_weight     ||dL/dW_l|| / ||W_l||         update_ratio    ||W_l(after step) - W_l|| / ||W_l||
  delta_norm         mean_i ||d loss_i / d z_l,i||: the per-example error signal ("delta") at the layer's
                     output, averaged over the batch (B times the gradient of the batch mean)
and for each hidden layer, with a = f(u) and u the activation's input (z, or norm(z) with a norm):
  activation/mean, activation/std       of a over the batch and units
  activation/saturated                  fraction of (example, unit) with |f'(u)| < 1% of max |f'|
  activation/dead                       fraction of units whose a is 0 for every example of the batch
  preactivation/std                     std of u
Whole model: total_grad_norm over all parameters, and first_to_last_grad_ratio = ||dL/dW_1|| / ||dL/dW_out||,
the one number that says "vanishing" when it is much smaller than 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vgbench.model import MLP

SATURATION_FRACTION = 0.01  # |f'| below this share of its maximum counts as saturated

LAYER_METRICS = ("grad_norm/weight", "grad_norm/bias", "grad_to_weight", "update_ratio", "delta_norm")
HIDDEN_METRICS = (
    "activation/mean",
    "activation/std",
    "activation/saturated",
    "activation/dead",
    "preactivation/std",
)


@dataclass
class Measurement:
    step: int
    layers: dict[str, list[float]]  # metric -> one value per layer, layer 1 first (hidden metrics: depth values)
    total_grad_norm: float
    first_to_last_grad_ratio: float
    extra: dict[str, float] = field(default_factory=dict)  # what the loop sent along (batch loss, ...)
    # 'grad/weight' (every layer) and 'activation' (hidden layers) -> one CPU tensor per layer; empty
    # unless histograms were asked for
    histograms: dict[str, list[Tensor]] = field(default_factory=dict)


def hidden_stats(u: Tensor, a: Tensor, derivative: Tensor, saturation_threshold: float) -> Tensor:
    """[mean a, std a, saturated fraction, dead fraction, std u] for one hidden layer, on a's device."""
    dtype = a.dtype if a.dtype.is_floating_point else torch.float32
    saturated = (derivative.abs() < saturation_threshold).to(dtype).mean()
    dead = (a == 0).all(dim=0).to(dtype).mean()
    return torch.stack([a.mean(), a.std(), saturated, dead, u.std()]).to(dtype)


class GradientMonitor:
    """Measures an MLP on chosen steps: step 0, every `every_n_steps`, and whenever the loop asks."""

    def __init__(self, model: MLP, every_n_steps: int, histogram_every_n_steps: int = 0) -> None:
        self.model = model
        self.every_n_steps = every_n_steps
        self.histogram_every_n_steps = histogram_every_n_steps
        self.linears = model.linears()
        largest = model.activation.max_derivative
        # a function with f' = 0 everywhere (the binary step) is saturated everywhere
        self.saturation_threshold = SATURATION_FRACTION * largest if largest > 0 else float("inf")
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._deltas: list[Tensor | None] = []
        self._hidden: list[Tensor | None] = []
        self._activations: list[Tensor | None] = []
        self._histograms = False

    def due(self, step: int) -> bool:
        return step % self.every_n_steps == 0

    def histograms_due(self, step: int) -> bool:
        return self.histogram_every_n_steps > 0 and step % self.histogram_every_n_steps == 0

    @contextlib.contextmanager
    def capture(self, histograms: bool = False) -> Iterator[None]:
        """Hooks for one forward and backward pass; all removed on exit, whatever happens."""
        if self._handles:
            raise RuntimeError("GradientMonitor.capture is already open")
        self._deltas = [None] * len(self.linears)
        self._hidden = [None] * len(self.model.hidden)
        self._activations = [None] * len(self.model.hidden)
        self._histograms = histograms
        try:
            for index, linear in enumerate(self.linears):
                self._handles.append(linear.register_forward_hook(self._delta_hook(index)))
            for index, layer in enumerate(self.model.hidden):
                self._handles.append(layer.activation.register_forward_hook(self._activation_hook(index)))
            yield
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles = []

    def _delta_hook(self, index: int):  # noqa: ANN202 - a hook factory
        def on_forward(module: nn.Module, inputs: tuple[Tensor, ...], z: Tensor) -> None:
            if z.requires_grad:

                def on_backward(grad: Tensor) -> None:
                    per_example = grad.detach() * grad.shape[0]  # undo the batch mean
                    self._deltas[index] = torch.linalg.vector_norm(per_example, dim=1).mean()

                z.register_hook(on_backward)

        return on_forward

    def _activation_hook(self, index: int):  # noqa: ANN202
        def on_forward(module: nn.Module, inputs: tuple[Tensor, ...], a: Tensor) -> None:
            u, a = inputs[0].detach(), a.detach()
            self._hidden[index] = hidden_stats(u, a, module.derivative(u), self.saturation_threshold)
            if self._histograms:
                self._activations[index] = a

        return on_forward

    def snapshot_weights(self) -> list[Tensor]:
        """Copies of the weights before the optimizer's step, for the update ratio."""
        return [linear.weight.detach().clone() for linear in self.linears]

    @torch.no_grad()
    def collect(self, step: int, weights_before: list[Tensor], extra: dict[str, Tensor] | None = None,
                loss_scale: float = 1.0) -> Measurement:  # fmt: skip
        """Everything measured on this step, brought to the host in one transfer.

        `loss_scale`: the factor fp16 loss scaling put into the backward pass; the deltas are divided
        by it (the weight gradients were already unscaled by the optimizer step).
        """
        extra = extra or {}
        captured = self._deltas + self._hidden
        if len(captured) != len(self.linears) + len(self.model.hidden) or any(c is None for c in captured):
            raise RuntimeError("collect() needs one forward and backward pass inside capture()")
        weights_now = [linear.weight.detach() for linear in self.linears]
        grads_w = [linear.weight.grad for linear in self.linears]
        grads_b = [linear.bias.grad for linear in self.linears]
        all_grads = [p.grad for p in self.model.parameters() if p.grad is not None]

        weight_norm = torch.stack(torch._foreach_norm(weights_before))
        grad_w = torch.stack(torch._foreach_norm(grads_w))
        grad_b = torch.stack(torch._foreach_norm(grads_b))
        update = torch.stack(torch._foreach_norm(torch._foreach_sub(weights_now, weights_before)))
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(all_grads)))
        per_layer = torch.stack(
            [grad_w, grad_b, grad_w / weight_norm, update / weight_norm, torch.stack(self._deltas) / loss_scale]
        )
        hidden = torch.stack(self._hidden)  # (depth, len(HIDDEN_METRICS))
        dtype = grad_w.dtype
        scalars = [
            per_layer.flatten().to(dtype),
            hidden.t().flatten().to(dtype),
            torch.stack([total, grad_w[0] / grad_w[-1]]).to(dtype),
            torch.stack([v.detach().to(dtype) for v in extra.values()]) if extra else grad_w[:0],
        ]
        histogram_parts: list[Tensor] = []
        if self._histograms:
            histogram_parts = [g.flatten().to(dtype) for g in grads_w] + [
                a.flatten().to(dtype) for a in self._activations
            ]
        host = torch.cat(scalars + histogram_parts).cpu()  # the one device-to-host transfer
        self._deltas, self._hidden, self._activations = [], [], []  # a later collect needs a new capture

        n_layers, depth = len(self.linears), len(self.model.hidden)
        sizes = [len(LAYER_METRICS) * n_layers, len(HIDDEN_METRICS) * depth, 2, len(extra)]
        sizes += [part.numel() for part in histogram_parts]
        pieces = host.split(sizes)
        layer_values, hidden_values, model_values, extra_values = (p.tolist() for p in pieces[:4])
        layers = {name: layer_values[i * n_layers : (i + 1) * n_layers] for i, name in enumerate(LAYER_METRICS)}
        layers |= {name: hidden_values[i * depth : (i + 1) * depth] for i, name in enumerate(HIDDEN_METRICS)}
        histograms = {}
        if histogram_parts:
            histograms = {"grad/weight": list(pieces[4 : 4 + n_layers]), "activation": list(pieces[4 + n_layers :])}
        return Measurement(
            step=step,
            layers=layers,
            total_grad_norm=model_values[0],
            first_to_last_grad_ratio=model_values[1],
            extra=dict(zip(extra, extra_values, strict=True)),
            histograms=histograms,
        )
