"""The MLP: `depth` hidden layers h_l = f(norm(W_l h_{l-1} + b_l)) and a linear output layer.

Layers are indexed from the input: hidden layers 1..depth, then the output layer depth+1. The classic
remedies for vanishing gradients are switches: `norm` (batch or layer norm before f) and `residual`
(h_l = h_{l-1} + f(...), wherever the widths match).
"""

from __future__ import annotations

import copy
import math

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from vgbench.activations import Activation, build_activation
from vgbench.config import hidden_widths


class HiddenLayer(nn.Module):
    """Linear -> (norm) -> activation -> (dropout), with an optional skip connection."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: Activation,
        norm: str,
        residual: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        norms = {"none": nn.Identity, "batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm}
        self.norm = norms[norm](out_features)
        self.activation = activation
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual and in_features == out_features

    def forward(self, h: Tensor) -> Tensor:
        a = self.dropout(self.activation(self.norm(self.linear(h))))
        return h + a if self.residual else a


class MLP(nn.Module):
    def __init__(
        self,
        in_features: int,
        widths: list[int],
        num_classes: int,
        activation: Activation,
        norm: str = "none",
        residual: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        sizes = [in_features, *widths]
        # Each layer gets its own copy of f, so a hook on `layer.activation` sees that layer alone.
        self.hidden = nn.ModuleList(
            HiddenLayer(sizes[i], sizes[i + 1], copy.deepcopy(activation), norm, residual, dropout)
            for i in range(len(widths))
        )
        self.output = nn.Linear(sizes[-1], num_classes)

    @property
    def activation(self) -> Activation:
        return self.hidden[0].activation

    def linears(self) -> list[nn.Linear]:
        """The Linear layers in order from the input: layer 1 first, the output layer last."""
        return [layer.linear for layer in self.hidden] + [self.output]

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        for layer in self.hidden:
            h = layer(h)
        return self.output(h)


def init_weight_(weight: Tensor, scheme: str, activation: Activation, std: float) -> None:
    """Initialise one weight matrix in place. fan_in is weight.shape[1]."""
    fan_in = weight.shape[1]
    if scheme == "auto":  # the usual practice: Kaiming for ReLU-like units, Xavier for the rest
        scheme = "kaiming_normal" if activation.kaiming_nonlinearity else "xavier_uniform"
    nonlinearity = activation.kaiming_nonlinearity or "relu"
    if scheme == "pytorch_default":
        # nn.Linear's own: kaiming_uniform_(a=sqrt(5)), which is U[-1/sqrt(fan_in), 1/sqrt(fan_in)]
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    elif scheme == "uniform_standard":  # the "standard" init of Glorot & Bengio (2010), eq. 1
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(weight, -bound, bound)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight)
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(weight, a=activation.kaiming_param, nonlinearity=nonlinearity)
    elif scheme == "kaiming_normal":
        nn.init.kaiming_normal_(weight, a=activation.kaiming_param, nonlinearity=nonlinearity)
    elif scheme == "normal":
        nn.init.normal_(weight, 0.0, std)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(weight)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}")


def init_bias_(bias: Tensor, scheme: str, fan_in: int, std: float, weight_scheme: str) -> None:
    """`auto`: PyTorch's own bias draw along with init=pytorch_default (so that pair is exactly
    nn.Linear's default), zeros with every other weight init."""
    if scheme == "auto":
        scheme = "pytorch_default" if weight_scheme == "pytorch_default" else "zeros"
    if scheme == "zeros":
        nn.init.zeros_(bias)
    elif scheme == "pytorch_default":
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(bias, -bound, bound)
    elif scheme == "normal":
        nn.init.normal_(bias, 0.0, std)
    else:
        raise ValueError(f"unknown bias init {scheme!r}")


def build_model(model_cfg: DictConfig, activation_cfg: DictConfig, in_features: int, num_classes: int) -> MLP:
    """The MLP described by `model` and `activation` configs, initialised on the CPU with torch's RNG."""
    activation = build_activation(activation_cfg.name, dict(activation_cfg.params))
    model = MLP(
        in_features,
        hidden_widths(model_cfg),
        num_classes,
        activation,
        norm=model_cfg.norm,
        residual=model_cfg.residual,
        dropout=model_cfg.dropout,
    )
    with torch.no_grad():
        for linear in model.linears():
            init_weight_(linear.weight, model_cfg.init, activation, model_cfg.init_std)
            init_bias_(linear.bias, model_cfg.bias_init, linear.in_features, model_cfg.bias_std, model_cfg.init)
    return model
