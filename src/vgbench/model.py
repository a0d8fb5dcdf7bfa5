"""The MLP, for K runs at once: `depth` hidden layers h_l = f(norm(W_l h_{l-1} + b_l)), then a linear output.

A stack is K networks of one shape whose weights live in tensors with a leading run dimension: W_l is
stored [K, in, out] and a batch is [K, B, features], so one `baddbmm` computes every run's layer. A run
alone is a stack of one (K = 1): there is one model, not a second one for sweeps. Each run draws its own
init from its own seed, keeps its own dropout masks, and its own norm statistics.

Layers are indexed from the input: hidden layers 1..depth, then the output layer depth+1. The classic
remedies for vanishing gradients are switches: `norm` (batch or layer norm before f) and `residual`
(h_l = h_{l-1} + f(...), wherever the widths match).

The registries below (weight inits, bias inits, norms) are where an option lives: name -> the code
that implements it. `vgbench.config.validate` offers their names as the choices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from vgbench.activations import Activation, activation_from_config
from vgbench.config import hidden_widths


class StackedLinear(nn.Module):
    """K independent linear layers of one shape: y_k = x_k W_k + b_k for x of shape [K, B, in].

    The weight is stored [K, in, out], the layout bmm multiplies by without a transpose, so its gradient
    arrives contiguous (stored [K, out, in], as nn.Linear keeps it, every step's gradient would be
    copied). `matrix(run)` gives one run's weight as nn.Linear holds it, [out, in].
    """

    def __init__(self, stack: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(stack, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(stack, out_features))

    def matrix(self, run: int) -> Tensor:
        return self.weight[run].T

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)


class StackedBatchNorm(nn.Module):
    """Batch norm per run: each run's units are normalised over its own batch, with its own running
    statistics. F.batch_norm over [B, K * D] treats every (run, unit) pair as one channel."""

    def __init__(self, stack: int, width: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(stack, width))
        self.bias = nn.Parameter(torch.zeros(stack, width))
        self.register_buffer("running_mean", torch.zeros(stack, width))
        self.register_buffer("running_var", torch.ones(stack, width))

    def forward(self, z: Tensor) -> Tensor:
        stack, batch, width = z.shape
        flat = z.transpose(0, 1).reshape(batch, stack * width)
        out = F.batch_norm(
            flat,
            self.running_mean.view(-1),
            self.running_var.view(-1),
            self.weight.view(-1),
            self.bias.view(-1),
            self.training,
            self.momentum,
            self.eps,
        )
        return out.view(batch, stack, width).transpose(0, 1)


class StackedLayerNorm(nn.Module):
    """Layer norm over each example's units, with a gain and shift per run."""

    def __init__(self, stack: int, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(stack, width))
        self.bias = nn.Parameter(torch.zeros(stack, width))

    def forward(self, z: Tensor) -> Tensor:
        normalised = F.layer_norm(z, z.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias.unsqueeze(1), normalised, self.weight.unsqueeze(1))


NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "none": lambda stack, width: nn.Identity(),
    "batchnorm": StackedBatchNorm,
    "layernorm": StackedLayerNorm,
}


class StackedDropout(nn.Module):
    """Dropout whose masks come from each run's own generator, so a run draws the same masks whether it
    trains alone or in a stack. The trainer re-seeds the generators from (seed, epoch) at each epoch."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generators: list[torch.Generator] = []

    def forward(self, a: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return a
        keep = 1.0 - self.p
        shape = a.shape[1:]
        masks = [torch.rand(shape, generator=g, device=a.device) < keep for g in self.generators]
        return a * torch.stack(masks).to(a.dtype) / keep


@dataclass
class Trace:
    """What the monitor reads from one forward pass, per layer from the input: each Linear's output z
    (its gradient is kept: the back-propagated error), and each hidden activation's input u and output a."""

    z: list[Tensor] = field(default_factory=list)
    u: list[Tensor] = field(default_factory=list)
    a: list[Tensor] = field(default_factory=list)

    def linear_output(self, z: Tensor) -> None:
        if z.requires_grad:
            z.retain_grad()
        self.z.append(z)


class HiddenLayer(nn.Module):
    """Linear -> norm -> activation -> dropout, with an optional skip connection."""

    def __init__(
        self,
        stack: int,
        in_features: int,
        out_features: int,
        activation: Activation,
        norm: str,
        residual: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.linear = StackedLinear(stack, in_features, out_features)
        self.norm = NORMS[norm](stack, out_features)
        self.activation = activation
        self.dropout = StackedDropout(dropout)
        self.residual = residual and in_features == out_features

    def forward(self, h: Tensor, trace: Trace | None = None) -> Tensor:
        z = self.linear(h)
        u = self.norm(z)
        a = self.activation(u)
        if trace is not None:
            trace.linear_output(z)
            trace.u.append(u)
            trace.a.append(a)
        out = self.dropout(a)
        return h + out if self.residual else out


class MLP(nn.Module):
    def __init__(
        self,
        stack: int,
        in_features: int,
        widths: list[int],
        num_classes: int,
        activation: Activation,
        norm: str = "none",
        residual: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stack = stack
        sizes = [in_features, *widths]
        self.hidden = nn.ModuleList(
            HiddenLayer(stack, sizes[i], sizes[i + 1], activation, norm, residual, dropout) for i in range(len(widths))
        )
        self.output = StackedLinear(stack, sizes[-1], num_classes)
        self.activation = activation

    def describe(self) -> str:
        """'10x128 relu MLP' (depth x width)."""
        widths = [layer.linear.out_features for layer in self.hidden]
        shape = f"{len(widths)}x{widths[0]}" if len(set(widths)) == 1 else "x".join(map(str, widths))
        return f"{shape} {self.activation.name} MLP"

    def linears(self) -> list[StackedLinear]:
        """The linear layers in order from the input: layer 1 first, the output layer last."""
        return [layer.linear for layer in self.hidden] + [self.output]

    def seed_dropout(self, seeds: Sequence[int], epoch: int, device: torch.device) -> None:
        """Each run's dropout generator for this epoch, from (seed, epoch) alone: a resumed run draws the
        masks of an uninterrupted one, on any device, and no generator state needs saving."""
        for index, layer in enumerate(self.hidden):
            if layer.dropout.p > 0:
                layer.dropout.generators = [
                    torch.Generator(device=device).manual_seed((seed * 1_000_003 + epoch) * 1009 + index)
                    for seed in seeds
                ]

    @torch.no_grad()
    def keep_runs(self, rows: Tensor) -> None:
        """Keep only these runs (row indices) in every parameter and buffer: the others leave the stack.
        Each parameter is a new Parameter (autograd keeps the shape of the old one's gradient), in the
        same order: the optimizer follows with its own keep_runs."""
        for module in self.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                setattr(module, name, nn.Parameter(param.index_select(0, rows)))
            for name, buffer in list(module.named_buffers(recurse=False)):
                setattr(module, name, buffer.index_select(0, rows))
        self.stack = len(rows)
        for layer in self.hidden:
            if layer.dropout.generators:
                layer.dropout.generators = [layer.dropout.generators[i] for i in rows.tolist()]

    def forward(self, x: Tensor, trace: Trace | None = None) -> Tensor:
        """x: [K, B, features] (or [K, B, 1, 28, 28]) -> logits [K, B, classes]."""
        h = x.flatten(2)
        for layer in self.hidden:
            h = layer(h, trace)
        logits = self.output(h)
        if trace is not None:
            trace.linear_output(logits)
        return logits


# --- inits: registries of name -> how it draws, and the variance of what it draws (the theory reads it) ---


@dataclass(frozen=True)
class WeightInit:
    """`draw(weight, activation, model_cfg, generator)` fills one run's [out, in] matrix in place from the
    run's own generator; `variance(fan_in, fan_out, activation, model_cfg)` is the variance of each entry it
    draws (sigma_w^2 = variance * fan_in). model_cfg: the run's model config (init_std, sigma_w2)."""

    draw: Callable[[Tensor, Activation, Any, torch.Generator], None]
    variance: Callable[[int, int, Activation, Any], float]


def _kaiming_gain(activation: Activation) -> float:
    return nn.init.calculate_gain(activation.kaiming_nonlinearity or "relu", activation.kaiming_param)


def _kaiming_uniform(weight: Tensor, activation: Activation, cfg: Any, generator: torch.Generator) -> None:
    nonlinearity = activation.kaiming_nonlinearity or "relu"
    nn.init.kaiming_uniform_(weight, a=activation.kaiming_param, nonlinearity=nonlinearity, generator=generator)


def _kaiming_normal(weight: Tensor, activation: Activation, cfg: Any, generator: torch.Generator) -> None:
    nonlinearity = activation.kaiming_nonlinearity or "relu"
    nn.init.kaiming_normal_(weight, a=activation.kaiming_param, nonlinearity=nonlinearity, generator=generator)


def _uniform_standard(weight: Tensor, activation: Activation, cfg: Any, generator: torch.Generator) -> None:
    """The "standard" init of Glorot & Bengio (2010), eq. 1: U[-1/sqrt(fan_in), 1/sqrt(fan_in)]."""
    bound = 1 / math.sqrt(weight.shape[1])
    nn.init.uniform_(weight, -bound, bound, generator=generator)


def _gaussian(weight: Tensor, activation: Activation, cfg: Any, generator: torch.Generator) -> None:
    """The mean-field theory's weights: N(0, sigma_w^2 / fan_in) (model.sigma_w2)."""
    nn.init.normal_(weight, 0.0, math.sqrt(cfg.sigma_w2 / weight.shape[1]), generator=generator)


def _orthogonal_variance(fan_in: int, fan_out: int, activation: Activation, cfg: Any) -> float:
    # orthonormal rows (out <= in: each row has squared norm 1) or orthonormal columns (out > in), times gain^2
    return cfg.sigma_w2 * (1 / fan_in if fan_out <= fan_in else 1 / fan_out)


def auto_weight_init(activation: Activation) -> str:
    """The usual practice: Kaiming for ReLU-like units (LeCun, gain 1, for SELU), Xavier for the rest."""
    return "kaiming_normal" if activation.kaiming_nonlinearity else "xavier_uniform"


WEIGHT_INITS: dict[str, WeightInit] = {
    "auto": WeightInit(
        lambda w, f, c, g: WEIGHT_INITS[auto_weight_init(f)].draw(w, f, c, g),
        lambda i, o, f, c: WEIGHT_INITS[auto_weight_init(f)].variance(i, o, f, c),
    ),
    # nn.Linear's own, kaiming_uniform_(a=sqrt(5)): the same distribution as uniform_standard
    "pytorch_default": WeightInit(
        lambda w, f, c, g: nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g), lambda i, o, f, c: 1 / (3 * i)
    ),
    "xavier_uniform": WeightInit(
        lambda w, f, c, g: nn.init.xavier_uniform_(w, generator=g), lambda i, o, f, c: 2 / (i + o)
    ),
    "xavier_normal": WeightInit(
        lambda w, f, c, g: nn.init.xavier_normal_(w, generator=g), lambda i, o, f, c: 2 / (i + o)
    ),
    "kaiming_uniform": WeightInit(_kaiming_uniform, lambda i, o, f, c: _kaiming_gain(f) ** 2 / i),
    "kaiming_normal": WeightInit(_kaiming_normal, lambda i, o, f, c: _kaiming_gain(f) ** 2 / i),
    "normal": WeightInit(
        lambda w, f, c, g: nn.init.normal_(w, 0.0, c.init_std, generator=g), lambda i, o, f, c: c.init_std**2
    ),
    "uniform_standard": WeightInit(_uniform_standard, lambda i, o, f, c: 1 / (3 * i)),
    "gaussian": WeightInit(_gaussian, lambda i, o, f, c: c.sigma_w2 / i),
    # gain sqrt(model.sigma_w2): 1 by default
    "orthogonal": WeightInit(
        lambda w, f, c, g: nn.init.orthogonal_(w, gain=math.sqrt(c.sigma_w2), generator=g), _orthogonal_variance
    ),
}


@dataclass(frozen=True)
class BiasInit:
    """`draw(bias, fan_in, std, generator)` fills one run's bias in place from the run's own generator;
    `variance(fan_in, std)` is sigma_b^2."""

    draw: Callable[[Tensor, int, float, torch.Generator], None]
    variance: Callable[[int, float], float]


def _pytorch_bias(bias: Tensor, fan_in: int, std: float, generator: torch.Generator) -> None:
    nn.init.uniform_(bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=generator)


BIAS_INITS: dict[str, BiasInit] = {
    "zeros": BiasInit(lambda b, fan_in, s, g: nn.init.zeros_(b), lambda fan_in, s: 0.0),
    "pytorch_default": BiasInit(_pytorch_bias, lambda fan_in, s: 1 / (3 * fan_in)),
    # model.bias_std
    "normal": BiasInit(lambda b, fan_in, s, g: nn.init.normal_(b, 0.0, s, generator=g), lambda fan_in, s: s**2),
}


def bias_scheme(bias_init: str, weight_init: str) -> str:
    """`auto`: PyTorch's own bias draw along with init=pytorch_default (so that pair is exactly
    nn.Linear's default), zeros with every other weight init."""
    if bias_init != "auto":
        return bias_init
    return "pytorch_default" if weight_init == "pytorch_default" else "zeros"


@torch.no_grad()
def init_run_(model: MLP, run: int, model_cfg: DictConfig, seed: int) -> None:
    """Draw run `run`'s weights and biases from a CPU generator of its own, seeded with `seed` (the same
    numbers as torch.manual_seed(seed) then the draws; the global generator is left alone, so runs can be
    drawn on several threads at once). Layer by layer from the input: the weight, then the bias."""
    weight_init = WEIGHT_INITS[model_cfg.init]
    bias_init = BIAS_INITS[bias_scheme(model_cfg.bias_init, model_cfg.init)]
    generator = torch.Generator().manual_seed(seed)
    for linear in model.linears():
        weight = torch.empty(linear.out_features, linear.in_features)
        weight_init.draw(weight, model.activation, model_cfg, generator)
        bias = torch.empty(linear.out_features)
        bias_init.draw(bias, linear.in_features, model_cfg.bias_std, generator)
        linear.weight[run].copy_(weight.T)
        linear.bias[run].copy_(bias)


def build_model(cfgs: Sequence[DictConfig], in_features: int, num_classes: int, threads: int = 1) -> MLP:
    """The MLP for a stack of runs (one config each; they share the shape), each run initialised from
    its own seed and init settings, on the CPU, on `threads` threads (a generator draws one number after
    another: a thousand runs' draws take seconds on one)."""
    shape = cfgs[0]
    activation = activation_from_config(shape.activation)
    model = MLP(
        len(cfgs),
        in_features,
        hidden_widths(shape.model),
        num_classes,
        activation,
        norm=shape.model.norm,
        residual=shape.model.residual,
        dropout=shape.model.dropout,
    )
    drawn = [(run, cfg.model, cfg.trainer.seed) for run, cfg in enumerate(cfgs)]
    if threads > 1 and len(cfgs) > 1:
        with ThreadPoolExecutor(min(threads, len(cfgs))) as pool:
            list(pool.map(lambda item: init_run_(model, *item), drawn))  # list: a failed draw raises here
    else:
        for item in drawn:
            init_run_(model, *item)
    return model
