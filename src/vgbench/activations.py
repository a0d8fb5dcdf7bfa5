"""Activation functions f and their derivatives f', in one registry.

Every activation is an `nn.Module` whose `forward` uses PyTorch's fused kernel (fast, autograd-aware)
and whose `derivative` writes f'(z) out by hand: the lessons back-propagate with it, the monitor uses it
to measure saturation, and the tests check it against finite differences and autograd.

`vjp(z, grad_output)` is the backward step dL/dz = dL/da * f'(z); softmax, whose Jacobian is not
diagonal, overrides it. `max_derivative` is sup |f'|: the most a layer can pass back, so
`max_derivative ** depth` bounds how much a deep stack can shrink (sigmoid: 0.25 per layer).
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

from vgbench.errors import ConfigError


class Activation(nn.Module):
    """Base class. Subclasses set `name` and implement `forward` and `derivative`."""

    name: str = ""
    # Kaiming's `nonlinearity` argument for init=auto; None means Xavier (the usual practice for
    # sigmoid-like and linear units).
    kaiming_nonlinearity: str | None = None
    kaiming_param: float = 0.0

    def derivative(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def vjp(self, z: Tensor, grad_output: Tensor) -> Tensor:
        """dL/dz from dL/da for a = f(z), elementwise f."""
        return grad_output * self.derivative(z)

    def saturated(self, z: Tensor, threshold: float) -> Tensor:
        """Where |f'(z)| < threshold (bool): the monitor's saturated units. Functions whose |f'| falls with
        |z| say it as a bound on |z|, without writing f' out (two passes over z instead of four or five)."""
        return self.derivative(z).abs() < threshold

    @property
    def max_derivative(self) -> float:
        """sup |f'(z)|, found on a dense float64 grid (exact at the grid for every function here)."""
        grid = torch.linspace(-30.0, 30.0, 600_001, dtype=torch.float64)
        return float(self.derivative(grid).abs().max())

    @classmethod
    def param_names(cls) -> list[str]:
        """The parameters its constructor takes, which its YAML file must give."""
        if cls.__init__ is nn.Module.__init__:
            return []
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)}" for k in self.param_names())


class _BinaryStepFunction(torch.autograd.Function):
    """Heaviside step with its true derivative: zero everywhere it exists (undefined at 0).

    No straight-through trick: the gradient reaching earlier layers is exactly zero, so a network of
    binary steps cannot learn by backpropagation. That is the lesson, so we keep it honest.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, z: Tensor) -> Tensor:
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> Tensor:
        return torch.zeros_like(grad_output)


class BinaryStep(Activation):
    name = "binary_step"

    def forward(self, z: Tensor) -> Tensor:
        return _BinaryStepFunction.apply(z)

    def derivative(self, z: Tensor) -> Tensor:
        return torch.zeros_like(z)


class Linear(Activation):
    name = "linear"

    def forward(self, z: Tensor) -> Tensor:
        return z

    def derivative(self, z: Tensor) -> Tensor:
        return torch.ones_like(z)


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(z)

    def derivative(self, z: Tensor) -> Tensor:
        s = torch.sigmoid(z)
        return s * (1 - s)  # at most 1/4, at z = 0

    def saturated(self, z: Tensor, threshold: float) -> Tensor:
        if not 0 < threshold < 0.25:
            return super().saturated(z, threshold)
        # s (1 - s) = threshold at s = (1 + sqrt(1 - 4 threshold)) / 2, z = logit(s); f' falls with |z|
        s = (1 + math.sqrt(1 - 4 * threshold)) / 2
        return z.abs() > math.log(s / (1 - s))


class Tanh(Activation):
    name = "tanh"

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(z)

    def derivative(self, z: Tensor) -> Tensor:
        return 1 - torch.tanh(z) ** 2

    def saturated(self, z: Tensor, threshold: float) -> Tensor:
        if not 0 < threshold < 1:
            return super().saturated(z, threshold)
        return z.abs() > math.atanh(math.sqrt(1 - threshold))  # 1 - tanh^2 = threshold there; f' falls with |z|


class ReLU(Activation):
    name = "relu"
    kaiming_nonlinearity = "relu"

    def forward(self, z: Tensor) -> Tensor:
        return F.relu(z)

    def derivative(self, z: Tensor) -> Tensor:
        return (z > 0).to(z.dtype)  # 0 at z = 0, as autograd does

    def saturated(self, z: Tensor, threshold: float) -> Tensor:
        if not 0 < threshold <= 1:
            return super().saturated(z, threshold)
        return ~(z > 0)  # f' = 0 (where z is NaN too, as derivative says)


class LeakyReLU(Activation):
    name = "leaky_relu"
    kaiming_nonlinearity = "leaky_relu"

    def __init__(self, negative_slope: float) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.kaiming_param = negative_slope

    def forward(self, z: Tensor) -> Tensor:
        return F.leaky_relu(z, self.negative_slope)

    def derivative(self, z: Tensor) -> Tensor:
        return torch.where(z > 0, torch.ones_like(z), self.negative_slope)


class Softmax(Activation):
    """softmax over the units of a layer: a_i = exp(z_i) / sum_j exp(z_j).

    Its Jacobian is diag(a) - a a^T, not diagonal, so `vjp` is written out; `derivative` returns the
    diagonal a_i (1 - a_i), which is what saturation is measured on.
    """

    name = "softmax"

    def forward(self, z: Tensor) -> Tensor:
        return torch.softmax(z, dim=-1)

    def derivative(self, z: Tensor) -> Tensor:
        a = torch.softmax(z, dim=-1)
        return a * (1 - a)

    def vjp(self, z: Tensor, grad_output: Tensor) -> Tensor:
        a = torch.softmax(z, dim=-1)
        return a * (grad_output - (grad_output * a).sum(dim=-1, keepdim=True))

    @property
    def max_derivative(self) -> float:
        return 0.25  # a (1 - a) peaks at a = 1/2


class ELU(Activation):
    name = "elu"
    kaiming_nonlinearity = "relu"

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, z: Tensor) -> Tensor:
        return F.elu(z, self.alpha)

    def derivative(self, z: Tensor) -> Tensor:
        return torch.where(z > 0, torch.ones_like(z), self.alpha * torch.exp(z))


class SELU(Activation):
    """Self-normalising ELU; its paper pairs it with LeCun init (Kaiming with gain 1)."""

    name = "selu"
    kaiming_nonlinearity = "linear"
    # The fixed constants of Klambauer et al. (2017), as in torch.nn.SELU.
    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946

    def forward(self, z: Tensor) -> Tensor:
        return F.selu(z)

    def derivative(self, z: Tensor) -> Tensor:
        return self.scale * torch.where(z > 0, torch.ones_like(z), self.alpha * torch.exp(z))


class GELU(Activation):
    """z * Phi(z), Phi the standard normal CDF (the exact form, not the tanh approximation)."""

    name = "gelu"
    kaiming_nonlinearity = "relu"

    def forward(self, z: Tensor) -> Tensor:
        return F.gelu(z)

    def derivative(self, z: Tensor) -> Tensor:
        cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
        pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        return cdf + z * pdf


class SiLU(Activation):
    """SiLU, also called swish: z * sigmoid(z)."""

    name = "silu"
    kaiming_nonlinearity = "relu"

    def forward(self, z: Tensor) -> Tensor:
        return F.silu(z)

    def derivative(self, z: Tensor) -> Tensor:
        s = torch.sigmoid(z)
        return s * (1 + z * (1 - s))


class Softplus(Activation):
    """log(1 + exp(beta z)) / beta, a smooth ReLU; linear above `threshold` for numerical stability."""

    name = "softplus"
    kaiming_nonlinearity = "relu"

    def __init__(self, beta: float, threshold: float) -> None:
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, z: Tensor) -> Tensor:
        return F.softplus(z, self.beta, self.threshold)

    def derivative(self, z: Tensor) -> Tensor:
        return torch.where(z * self.beta > self.threshold, torch.ones_like(z), torch.sigmoid(self.beta * z))


class Mish(Activation):
    """z * tanh(softplus(z))."""

    name = "mish"
    kaiming_nonlinearity = "relu"

    def forward(self, z: Tensor) -> Tensor:
        return F.mish(z)

    def derivative(self, z: Tensor) -> Tensor:
        t = torch.tanh(F.softplus(z))
        return t + z * (1 - t**2) * torch.sigmoid(z)


class Hardtanh(Activation):
    name = "hardtanh"

    def __init__(self, min_val: float, max_val: float) -> None:
        super().__init__()
        self.min_val = min_val
        self.max_val = max_val

    def forward(self, z: Tensor) -> Tensor:
        return F.hardtanh(z, self.min_val, self.max_val)

    def derivative(self, z: Tensor) -> Tensor:
        return ((z > self.min_val) & (z < self.max_val)).to(z.dtype)


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls
    for cls in (
        BinaryStep,
        Linear,
        Sigmoid,
        Tanh,
        ReLU,
        LeakyReLU,
        Softmax,
        ELU,
        SELU,
        GELU,
        SiLU,
        Softplus,
        Mish,
        Hardtanh,
    )
}


def check_params(name: str, params: dict[str, float]) -> None:
    """Raise ConfigError unless `params` are exactly the parameters activation `name` takes."""
    expected = ACTIVATIONS[name].param_names()
    if sorted(params) != sorted(expected):
        raise ConfigError(
            f"activation.params={params} do not fit activation {name!r}; "
            f"it takes: {', '.join(expected) or 'no parameters'}"
        )


CUSTOM = "custom"  # activation=custom activation.target=module.function: a user's own function


def import_target(target: str) -> Any:  # a callable
    """`module.function` imported, from PYTHONPATH or the folder vgbench runs from."""
    module_name, _, attribute = target.rpartition(".")
    if not module_name:
        raise ConfigError(f"activation.target={target!r} is not valid; give module.function, as my_module.my_function")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            if os.getcwd() in sys.path:
                raise
            sys.path.append(os.getcwd())  # a module beside the user, as `python -m` would find it
            module = importlib.import_module(module_name)
        function = getattr(module, attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(
            f"activation.target={target!r} does not import ({error}); put {module_name} on "
            "PYTHONPATH or in the folder you run vgbench from"
        ) from error
    except Exception as error:  # the user's module itself fails as it is imported (a SyntaxError, ...)
        where = f" at line {error.lineno}" if isinstance(error, SyntaxError) and error.lineno else ""
        reason = str(error).splitlines()[0] if str(error) else ""
        raise ConfigError(
            f"activation.target={target!r}: importing {module_name} fails with {type(error).__name__}{where}: {reason}"
        ) from error
    if not callable(function):
        raise ConfigError(f"activation.target={target!r} is not a function")
    return function


def check_elementwise(function: Any, target: str) -> None:
    """f must map a tensor to one of the same shape, each output depending on its own input alone."""
    z = torch.linspace(-3, 3, 15, dtype=torch.float64).reshape(3, 5)
    try:
        a = function(z)
        nudged = z.clone()
        nudged[1, 2] += 0.5
        b = function(nudged)
    except Exception as error:  # whatever the user's function raises is reported in one line
        raise ConfigError(f"activation.target={target!r} fails on a tensor: {type(error).__name__}: {error}") from error
    if not isinstance(a, Tensor) or a.shape != z.shape:
        shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
        raise ConfigError(f"activation.target={target!r} is not elementwise: it maps shape (3, 5) to {shape}")
    changed = (a != b).nonzero().tolist()
    if any(index != [1, 2] for index in changed):
        raise ConfigError(f"activation.target={target!r} is not elementwise: changing one input changed other outputs")


class CustomActivation(Activation):
    """A user's elementwise torch function, named by its import path; f' comes from autograd."""

    name = CUSTOM

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.function = import_target(target)
        check_elementwise(self.function, target)

    def forward(self, z: Tensor) -> Tensor:
        return self.function(z)

    def derivative(self, z: Tensor) -> Tensor:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            (slope,) = torch.autograd.grad(self.function(z).sum(), z)
        return slope


def _custom_activation(cfg: Any) -> CustomActivation:  # an activation config
    """activation=custom: the user's function, imported and checked elementwise (one line if not)."""
    if not cfg.get("target"):
        raise ConfigError("activation=custom needs activation.target=module.function (an elementwise torch function)")
    if cfg.params:
        raise ConfigError(f"activation.params={dict(cfg.params)} do not fit activation 'custom'; it takes none")
    return CustomActivation(cfg.target)


def check_activation(cfg: Any) -> None:  # an activation config (DictConfig or dataclass)
    """The activation config names a registered function with exactly its parameters, or a user's own
    elementwise function (activation=custom activation.target=module.function)."""
    if cfg.name == CUSTOM:
        _custom_activation(cfg)
        return
    if cfg.name not in ACTIVATIONS:
        choices = ", ".join([*sorted(ACTIVATIONS), CUSTOM])
        raise ConfigError(f"activation={cfg.name!r} is not valid; choose one of: {choices}")
    check_params(cfg.name, dict(cfg.params))


def activation_from_config(cfg: Any) -> Activation:
    """The activation an `activation` config describes (a registered one or the user's own)."""
    if cfg.name == CUSTOM:
        return _custom_activation(cfg)
    return build_activation(cfg.name, dict(cfg.params))


def build_activation(name: str, params: dict[str, float] | None = None) -> Activation:
    """The activation `name` with its parameters (as given in conf/activation/NAME.yaml)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation={name!r} is not valid; choose one of: {', '.join(sorted(ACTIVATIONS))}")
    params = dict(params or {})
    check_params(name, params)
    return ACTIVATIONS[name](**params)
