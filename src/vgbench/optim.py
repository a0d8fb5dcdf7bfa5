"""Optimizers for a stack of runs: one update for K runs, each with its own hyperparameters.

Every parameter has a leading run dimension (see vgbench.model), so one tensor operation updates every
run. A hyperparameter is one value per run (`PerRun`): a Python float when the runs share it (always for
a run alone: the fast path), else a [K] tensor broadcast over the parameter. The formulas are
torch.optim's (SGD with momentum and Nesterov, Adam, RMSprop), written out once; tests/test_optim.py
checks each against torch.optim step by step.

`step()` returns each parameter's update (the monitor's update ratio reads it). Runs marked inactive
(a diverged run in a stack) are left as they are while their stack-mates go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from vgbench.config import ConfigError, at_least


class PerRun:
    """One hyperparameter with a value per run: Python floats when the runs share it, else a [K] tensor."""

    def __init__(self, values: Sequence[float] | Tensor, device: torch.device) -> None:
        if isinstance(values, Tensor):
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

    @staticmethod
    def combine(fn: Callable[..., Any], *inputs: PerRun) -> PerRun:
        """fn of per-run values (1 - beta, lr / (1 - beta^t), ...), in float64: on the host when every
        input is shared, else on the device (no host transfer in the step)."""
        if all(i.uniform for i in inputs):
            return PerRun([fn(*(i.values[0] for i in inputs))], inputs[0].device)
        stack = max(len(i.tensor) for i in inputs if i.tensor is not None)
        tensors = [i.tensor if i.tensor is not None else torch.full((stack,), i.values[0], dtype=torch.float64,
                                                                    device=i.device) for i in inputs]  # fmt: skip
        return PerRun(fn(*tensors), inputs[0].device)


def _check_fraction(key: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{key}={value!r} is not valid; it must be in [0, 1)")


class StackedOptimizer(torch.optim.Optimizer):
    """The common part: one parameter group, per-run hyperparameters, per-run state for checkpoints.

    A subclass of torch.optim.Optimizer so that torch.amp.GradScaler can unscale and step it.
    """

    state_names: tuple[str, ...] = ()  # the per-parameter buffers a subclass keeps

    def __init__(self, params: Sequence[nn.Parameter], cfgs: Sequence[DictConfig]) -> None:
        super().__init__(list(params), defaults={})
        self.params: list[nn.Parameter] = list(self.param_groups[0]["params"])
        self.stack = len(cfgs)
        self.device = self.params[0].device
        self.steps = 0
        self.lr = self.per_run(cfgs, "lr")
        self.weight_decay = self.per_run(cfgs, "weight_decay")
        self.active: Tensor | None = None  # [K] bool once some run has stopped updating

    def per_run(self, cfgs: Sequence[DictConfig], key: str, index: int | None = None) -> PerRun:
        values = [cfg[key] if index is None else cfg[key][index] for cfg in cfgs]
        return PerRun(values, self.device)

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        at_least("optimizer.lr", cfg.lr, 0.0, strict=True)
        at_least("optimizer.weight_decay", cfg.weight_decay, 0.0)

    def freeze(self, runs: Sequence[int]) -> None:
        """Stop updating these runs (their parameters and state stay as they are)."""
        if self.active is None:
            self.active = torch.ones(self.stack, dtype=torch.bool, device=self.device)
        self.active[list(runs)] = False

    def _buffer(self, p: Tensor, name: str) -> Tensor:
        state = self.state[p]
        if name not in state:
            state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state[name]

    def _with_decay(self, p: Tensor, grad: Tensor) -> Tensor:
        decay = self.weight_decay.like(p)
        return grad if isinstance(decay, float) and decay == 0 else grad + decay * p

    @torch.no_grad()
    def step(self) -> list[Tensor]:  # type: ignore[override]
        """One update of every run; returns the update of each parameter (aligned with `self.params`)."""
        self.steps += 1
        updates = []
        for p in self.params:
            if p.grad is None:
                updates.append(torch.zeros_like(p))
                continue
            update = self.update(p, self._with_decay(p, p.grad))
            if self.active is not None:
                update = torch.where(self.active.view(-1, *[1] * (p.dim() - 1)), update, 0)
            p.add_(update)
            updates.append(update)
        return updates

    def update(self, p: Tensor, grad: Tensor) -> Tensor:
        raise NotImplementedError

    def run_state(self, run: int) -> dict[str, Any]:
        """Run `run`'s share of the state, as a stack of one: what its checkpoint keeps."""
        buffers = {name: [self.state[p][name][run : run + 1].clone() if name in self.state[p] else None
                          for p in self.params] for name in self.state_names}  # fmt: skip
        return {"steps": self.steps, "buffers": buffers}

    def load_run_state(self, run: int, saved: dict[str, Any]) -> None:
        self.steps = saved["steps"]
        for name, tensors in saved["buffers"].items():
            for p, tensor in zip(self.params, tensors, strict=True):
                if tensor is not None:
                    self._buffer(p, name)[run].copy_(tensor[0])


class SGD(StackedOptimizer):
    """p <- p - lr d, with d = g + wd p, or with momentum: buf <- m buf + d, d <- buf (Nesterov: d + m buf)."""

    state_names = ("momentum_buffer",)

    def __init__(self, params: Sequence[nn.Parameter], cfgs: Sequence[DictConfig]) -> None:
        super().__init__(params, cfgs)
        self.momentum = self.per_run(cfgs, "momentum")
        self.nesterov = bool(cfgs[0].nesterov)
        self.has_momentum = any(v > 0 for v in self.momentum.values)

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        super().check(cfg)
        _check_fraction("optimizer.momentum", cfg.momentum)
        if cfg.nesterov and cfg.momentum <= 0:
            raise ConfigError("optimizer.nesterov=true needs optimizer.momentum > 0 (optimizer=momentum sets 0.9)")

    def update(self, p: Tensor, grad: Tensor) -> Tensor:
        direction = grad
        if self.has_momentum:
            momentum = self.momentum.like(p)
            first = "momentum_buffer" not in self.state[p]
            buffer = self._buffer(p, "momentum_buffer")
            if first:
                buffer.copy_(grad)
            else:
                buffer.mul_(momentum).add_(grad)
            direction = grad + momentum * buffer if self.nesterov else buffer
        return -self.lr.like(p) * direction


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
            _check_fraction("optimizer.betas", beta)
        at_least("optimizer.eps", cfg.eps, 0.0, strict=True)

    def step(self) -> list[Tensor]:  # type: ignore[override]
        t = self.steps + 1  # the bias corrections of this step
        self.step_size = PerRun.combine(lambda lr, b1: lr / (1 - b1**t), self.lr, self.beta1)
        self.correction2_sqrt = PerRun.combine(lambda b2: (1 - b2**t) ** 0.5, self.beta2)
        return super().step()

    def update(self, p: Tensor, grad: Tensor) -> Tensor:
        exp_avg, exp_avg_sq = self._buffer(p, "exp_avg"), self._buffer(p, "exp_avg_sq")
        exp_avg.lerp_(grad, self.one_minus_beta1.like(p))
        exp_avg_sq.mul_(self.beta2.like(p)).add_(grad * grad * self.one_minus_beta2.like(p))
        denominator = (exp_avg_sq.sqrt() / self.correction2_sqrt.like(p)).add_(self.eps.like(p))
        return -self.step_size.like(p) * exp_avg / denominator


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

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        super().check(cfg)
        _check_fraction("optimizer.alpha", cfg.alpha)
        _check_fraction("optimizer.momentum", cfg.momentum)
        at_least("optimizer.eps", cfg.eps, 0.0, strict=True)

    def update(self, p: Tensor, grad: Tensor) -> Tensor:
        square_avg = self._buffer(p, "square_avg")
        square_avg.mul_(self.alpha.like(p)).add_(grad * grad * self.one_minus_alpha.like(p))
        direction = grad / square_avg.sqrt().add_(self.eps.like(p))
        if self.has_momentum:
            buffer = self._buffer(p, "momentum_buffer")
            direction = buffer.mul_(self.momentum.like(p)).add_(direction)
        return -self.lr.like(p) * direction


# name -> optimizer; `momentum` is SGD whose preset (conf/optimizer/momentum.yaml) sets momentum 0.9
OPTIMIZERS: dict[str, type[StackedOptimizer]] = {"sgd": SGD, "momentum": SGD, "adam": Adam, "rmsprop": RMSprop}


def build_optimizer(cfgs: Sequence[DictConfig], params: Sequence[nn.Parameter]) -> StackedOptimizer:
    """The optimizer of a stack: `cfgs` holds each run's optimizer config (they share the name)."""
    return OPTIMIZERS[cfgs[0].name](params, cfgs)
