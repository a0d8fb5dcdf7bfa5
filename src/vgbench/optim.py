"""Optimizers for a stack of runs: one update for K runs, each with its own hyperparameters.

Every parameter has a leading run dimension (see vgbench.model), so one tensor operation updates every
run. A hyperparameter is one value per run (`PerRun`): a Python float when the runs share it (always for
a run alone: the fast path), else a [K] tensor broadcast over the parameter. The formulas are
torch.optim's (SGD with momentum and Nesterov, Adam, RMSprop), written out once; tests/test_optim.py
checks each against torch.optim step by step.

Every step fuses its update into one operation per parameter; `step(keep_updates=True)` (the monitor's
measured steps) also returns it as a `KeptUpdate`, scale times direction, whose norms the update ratio
reads without the update being written out. A run that leaves the stack (it diverged) takes its
state and hyperparameters with it: `keep_runs`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from vgbench.errors import ConfigError, at_least, fraction
from vgbench.run_slices import run_slices


class PerRun:
    """One hyperparameter with a value per run: Python floats when the runs share it, else a [K] tensor."""

    def __init__(self, values: Sequence[float] | Tensor, device: torch.device) -> None:
        if isinstance(values, Tensor):  # derived on the device from other per-run values (combine)
            self.values, self.tensor = None, values
        else:
            distinct = {float(v) for v in values}
            self.values = [float(v) for v in values]
            self.tensor = None if len(distinct) == 1 else torch.tensor(self.values, dtype=torch.float64, device=device)
        self.device = device
        self._views: dict[tuple[int, torch.dtype], Tensor] = {}

    @property
    def uniform(self) -> bool:
        return self.tensor is None

    def like(self, p: Tensor) -> float | Tensor:
        """The value(s) shaped to broadcast over parameter `p` ([K, ...])."""
        if self.tensor is None:
            return self.values[0]
        key = (p.dim(), p.dtype)
        if key not in self._views:
            self._views[key] = self.tensor.to(p.dtype).view(-1, *[1] * (p.dim() - 1))
        return self._views[key]

    def take(self, rows: Tensor) -> PerRun:
        """These runs' values only (row indices)."""
        if self.values is not None:
            return PerRun(
                [self.values[0]] * len(rows) if self.uniform else [self.values[i] for i in rows.tolist()], self.device
            )
        return PerRun(self.tensor.index_select(0, rows), self.device)

    @staticmethod
    def combine(fn: Callable[..., Any], *inputs: PerRun) -> PerRun:
        """fn of per-run values (1 - beta, lr / (1 - beta^t), ...), in float64: on the host when every
        input is shared, else on the device (no host transfer in the step)."""
        if all(i.uniform for i in inputs):
            return PerRun([fn(*(i.values[0] for i in inputs))], inputs[0].device)
        stack = max(len(i.tensor) for i in inputs if i.tensor is not None)
        tensors = [
            i.tensor
            if i.tensor is not None
            else torch.full((stack,), i.values[0], dtype=torch.float64, device=i.device)
            for i in inputs
        ]
        return PerRun(fn(*tensors), inputs[0].device)


class KeptUpdate(Sequence[Tensor]):
    """What one step added to each parameter, kept as scale * direction (the step's own factors) rather than
    written out: the monitor needs only each update's norm per run, |scale_k| * ||direction_k||, and writing
    the update out would take a pass over every parameter and as much memory again. Indexing writes one
    parameter's out."""

    def __init__(self, directions: list[Tensor], scale: PerRun, stack: int) -> None:
        self.directions, self.scale, self.stack = directions, scale, stack

    def __getitem__(self, index: int) -> Tensor:  # type: ignore[override]
        return self.directions[index] * self.scale.like(self.directions[index])

    def __len__(self) -> int:
        return len(self.directions)

    def run_scales(self, like: Tensor) -> Tensor:
        """|scale| of each run, [K], in `like`'s dtype and on its device."""
        if self.scale.uniform:
            return torch.full((self.stack,), abs(self.scale.values[0]), dtype=like.dtype, device=like.device)
        return self.scale.tensor.abs().to(like.dtype)


class StackedOptimizer:
    """The common part: one parameter group, per-run hyperparameters, per-run state for checkpoints.

    It has what torch.amp.GradScaler uses of an optimizer (`param_groups`, `step`), without subclassing
    torch.optim.Optimizer, whose methods import torch._dynamo on first use (a slow import, paid by every
    job). Updates use torch's foreach operations: a handful of kernels for all parameters, which is what a
    small network's step on a GPU is made of.
    """

    state_names: tuple[str, ...] = ()  # the per-parameter buffers a subclass keeps

    def __init__(self, params: Sequence[nn.Parameter], cfgs: Sequence[DictConfig]) -> None:
        self.params: list[nn.Parameter] = list(params)
        self.param_groups = [{"params": self.params}]
        self.state: defaultdict[nn.Parameter, dict[str, Tensor]] = defaultdict(dict)
        self.stack = len(cfgs)
        self.device = self.params[0].device
        self.steps = 0
        self.lr = self.per_run(cfgs, "lr")
        self.weight_decay = self.per_run(cfgs, "weight_decay")

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def per_run(self, cfgs: Sequence[DictConfig], key: str, index: int | None = None) -> PerRun:
        values = [cfg[key] if index is None else cfg[key][index] for cfg in cfgs]
        return PerRun(values, self.device)

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        at_least("optimizer.lr", cfg.lr, 0.0, strict=True)
        at_least("optimizer.weight_decay", cfg.weight_decay, 0.0)

    @classmethod
    def floats_per_parameter(cls, cfg: DictConfig) -> int:
        """Values a step holds at once for each parameter, at most (vgbench.memory plans a stack with it):
        the weight, its gradient, a temporary of the step, and with weight decay the decayed gradient beside
        it; a subclass adds its state buffers and the temporaries of its formula (`direction`). Measured in
        tests/test_optim.py."""
        return 3 + (1 if cfg.weight_decay > 0 else 0)

    @torch.no_grad()
    def keep_runs(self, rows: Tensor, params: Sequence[nn.Parameter]) -> None:
        """Keep only these runs (row indices): `params` are the model's new parameters, cut the same way and
        in the same order; the state and every per-run hyperparameter (the PerRun attributes of this object
        and its subclass) follow."""
        state = {
            new: {name: buffer.index_select(0, rows) for name, buffer in self.state[old].items()}
            for old, new in zip(self.params, params, strict=True)
        }
        self.params = list(params)
        self.param_groups[0]["params"] = self.params
        self.state = defaultdict(dict, state)
        for name, value in list(vars(self).items()):
            if isinstance(value, PerRun):
                setattr(self, name, value.take(rows))
        self.stack = len(rows)

    def of(self, value: PerRun) -> float | list[Tensor]:
        """A hyperparameter for foreach operations over the parameters: one float, or one view per parameter."""
        return value.values[0] if value.uniform else [value.like(p) for p in self.params]

    def buffers(self, name: str) -> list[Tensor]:
        for p in self.params:
            if name not in self.state[p]:
                self.state[p][name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return [self.state[p][name] for p in self.params]

    @torch.no_grad()
    def step(self, keep_updates: bool = False) -> KeptUpdate | None:  # type: ignore[override]
        """One update of every run, fused into one operation per parameter. With `keep_updates` (the
        monitor's measured steps) it returns what was added to each parameter, aligned with `self.params`."""
        self.steps += 1
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        if not (self.weight_decay.uniform and self.weight_decay.values[0] == 0):
            grads = torch._foreach_add(grads, torch._foreach_mul(self.params, self.of(self.weight_decay)))
        direction, scale = self.direction(grads)
        if scale.uniform:  # p += scale * direction, fused
            torch._foreach_add_(self.params, direction, alpha=scale.values[0])
        else:
            torch._foreach_addcmul_(self.params, direction, self.of(scale))
        return KeptUpdate(list(direction), scale, self.stack) if keep_updates else None

    def direction(self, grads: list[Tensor]) -> tuple[list[Tensor], PerRun]:
        """The step as (direction, scale): each parameter gets scale * direction (weight decay included
        in `grads`)."""
        raise NotImplementedError

    def run_states(self) -> list[dict[str, Any]]:
        """Each run's share of the state, as a stack of one: what its checkpoint keeps (vgbench.run_slices:
        each buffer leaves the device once). A buffer not made yet is None."""
        buffers = {
            (name, i): self.state[p][name]
            for name in self.state_names
            for i, p in enumerate(self.params)
            if name in self.state[p]
        }
        indices = range(len(self.params))
        return [
            {
                "steps": self.steps,
                "buffers": {name: [shares.get((name, i)) for i in indices] for name in self.state_names},
            }
            for shares in run_slices(buffers, self.stack)
        ]

    def load_run_state(self, run: int, saved: dict[str, Any]) -> None:
        self.steps = saved["steps"]
        for name, tensors in saved["buffers"].items():
            if any(tensor is not None for tensor in tensors):
                for buffer, tensor in zip(self.buffers(name), tensors, strict=True):
                    buffer[run].copy_(tensor[0])


class SGD(StackedOptimizer):
    """p <- p - lr d, with d = g + wd p, or with momentum: buf <- m buf + d, d <- buf (Nesterov: d + m buf)."""

    state_names = ("momentum_buffer",)

    def __init__(self, params: Sequence[nn.Parameter], cfgs: Sequence[DictConfig]) -> None:
        super().__init__(params, cfgs)
        self.momentum = self.per_run(cfgs, "momentum")
        self.nesterov = bool(cfgs[0].nesterov)
        self.has_momentum = any(v > 0 for v in self.momentum.values)
        self.neg_lr = PerRun.combine(lambda lr: -lr, self.lr)

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        super().check(cfg)
        fraction("optimizer.momentum", cfg.momentum)
        if cfg.nesterov and cfg.momentum <= 0:
            raise ConfigError("optimizer.nesterov=true needs optimizer.momentum > 0 (optimizer=momentum sets 0.9)")

    @classmethod
    def floats_per_parameter(cls, cfg: DictConfig) -> int:
        """The momentum buffer, and Nesterov's d + m buf."""
        momentum = 1 + (1 if cfg.nesterov else 0) if cfg.momentum > 0 else 0
        return super().floats_per_parameter(cfg) + momentum

    def direction(self, grads: list[Tensor]) -> tuple[list[Tensor], PerRun]:
        direction = grads
        if self.has_momentum:
            momentum = self.of(self.momentum)
            first = "momentum_buffer" not in self.state[self.params[0]]
            buffers = self.buffers("momentum_buffer")
            if first:
                torch._foreach_copy_(buffers, grads)
            else:
                torch._foreach_mul_(buffers, momentum)
                torch._foreach_add_(buffers, grads)
            direction = torch._foreach_add(grads, torch._foreach_mul(buffers, momentum)) if self.nesterov else buffers
        return direction, self.neg_lr


class Adam(StackedOptimizer):
    """m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Sequence[nn.Parameter], cfgs: Sequence[DictConfig]) -> None:
        super().__init__(params, cfgs)
        self.beta1, self.beta2 = self.per_run(cfgs, "betas", 0), self.per_run(cfgs, "betas", 1)
        self.eps = self.per_run(cfgs, "eps")
        self.one_minus_beta1 = PerRun.combine(lambda b: 1 - b, self.beta1)
        self.one_minus_beta2 = PerRun.combine(lambda b: 1 - b, self.beta2)

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        super().check(cfg)
        if len(cfg.betas) != 2:
            raise ConfigError(f"optimizer.betas={list(cfg.betas)} is not valid; give two values, as [0.9, 0.999]")
        for beta in cfg.betas:
            fraction("optimizer.betas", beta)
        at_least("optimizer.eps", cfg.eps, 0.0, strict=True)

    @classmethod
    def floats_per_parameter(cls, cfg: DictConfig) -> int:
        """m and v; then two temporaries at once (g^2 and its scaled copy, sqrt(v) and the denominator,
        the denominator and the direction), one of them beside the kept update."""
        return super().floats_per_parameter(cfg) + 2 + 1

    def direction(self, grads: list[Tensor]) -> tuple[list[Tensor], PerRun]:
        t = self.steps  # the bias corrections of this step
        neg_step_size = PerRun.combine(lambda lr, b1: -lr / (1 - b1**t), self.lr, self.beta1)
        correction2_sqrt = PerRun.combine(lambda b2: (1 - b2**t) ** 0.5, self.beta2)
        exp_avg, exp_avg_sq = self.buffers("exp_avg"), self.buffers("exp_avg_sq")
        torch._foreach_lerp_(exp_avg, grads, self.of(self.one_minus_beta1))  # m + (1 - b1)(g - m), as torch does
        torch._foreach_mul_(exp_avg_sq, self.of(self.beta2))
        torch._foreach_add_(
            exp_avg_sq, torch._foreach_mul(torch._foreach_mul(grads, grads), self.of(self.one_minus_beta2))
        )
        denominator = torch._foreach_div(torch._foreach_sqrt(exp_avg_sq), self.of(correction2_sqrt))
        torch._foreach_add_(denominator, self.of(self.eps))
        return torch._foreach_div(exp_avg, denominator), neg_step_size


class RMSprop(StackedOptimizer):
    """v <- a v + (1 - a) g^2; p <- p - lr g / (sqrt(v) + eps), or with momentum: buf <- m buf + g / (...)."""

    state_names = ("square_avg", "momentum_buffer")

    def __init__(self, params: Sequence[nn.Parameter], cfgs: Sequence[DictConfig]) -> None:
        super().__init__(params, cfgs)
        self.alpha = self.per_run(cfgs, "alpha")
        self.one_minus_alpha = PerRun.combine(lambda a: 1 - a, self.alpha)
        self.eps = self.per_run(cfgs, "eps")
        self.momentum = self.per_run(cfgs, "momentum")
        self.has_momentum = any(v > 0 for v in self.momentum.values)
        self.neg_lr = PerRun.combine(lambda lr: -lr, self.lr)

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        super().check(cfg)
        fraction("optimizer.alpha", cfg.alpha)
        fraction("optimizer.momentum", cfg.momentum)
        at_least("optimizer.eps", cfg.eps, 0.0, strict=True)

    @classmethod
    def floats_per_parameter(cls, cfg: DictConfig) -> int:
        """v (and the momentum buffer); then two temporaries at once, one of them beside the kept update."""
        return super().floats_per_parameter(cfg) + 1 + (1 if cfg.momentum > 0 else 0) + 1

    def direction(self, grads: list[Tensor]) -> tuple[list[Tensor], PerRun]:
        square_avg = self.buffers("square_avg")
        torch._foreach_mul_(square_avg, self.of(self.alpha))
        torch._foreach_add_(
            square_avg, torch._foreach_mul(torch._foreach_mul(grads, grads), self.of(self.one_minus_alpha))
        )
        denominator = torch._foreach_sqrt(square_avg)
        torch._foreach_add_(denominator, self.of(self.eps))
        direction = torch._foreach_div(grads, denominator)
        if self.has_momentum:
            buffers = self.buffers("momentum_buffer")
            torch._foreach_mul_(buffers, self.of(self.momentum))
            torch._foreach_add_(buffers, direction)
            direction = buffers
        return direction, self.neg_lr


# name -> optimizer; `momentum` is SGD whose preset (conf/optimizer/momentum.yaml) sets momentum 0.9
OPTIMIZERS: dict[str, type[StackedOptimizer]] = {"sgd": SGD, "momentum": SGD, "adam": Adam, "rmsprop": RMSprop}


def build_optimizer(cfgs: Sequence[DictConfig], params: Sequence[nn.Parameter]) -> StackedOptimizer:
    """The optimizer of a stack: `cfgs` holds each run's optimizer config (they share the name)."""
    return OPTIMIZERS[cfgs[0].name](params, cfgs)
