"""Watch any model: vgbench's per-layer statistics, flow verdict, files and TensorBoard layout for a network
vgbench did not build, through hooks that exist only while a measured step runs.

    watch = vgbench.watch(model, out_dir="outputs/watch/my_cnn", every_n_steps=100)
    for step, (x, y) in enumerate(batches):
        with watch.step(step) as extra:      # measures only when step % every_n_steps == 0
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            extra["train/batch_loss"] = loss  # any scalars to log beside the statistics
    watch.close()                            # writes summary.json and the series

What is a layer, and what is measured (the formulas are vgbench.monitor's, shared with the MLP's monitor):
- A layer is a module that holds parameters itself (Linear, Conv*, Embedding, a norm's affine parameters,
  MultiheadAttention's input projection, any custom module), named by its qualified name and ordered by
  its first call in the forward pass; a module never called directly (MultiheadAttention's out_proj, whose
  weights its parent uses) comes right after its nearest called ancestor.
  Its parameters whose names end in "bias" are its bias; the rest its weight. Per layer: ||dL/dW||,
  ||dL/db||, ||dL/dW|| / ||W||, the update ||W_after - W_before|| / ||W_before|| (the step inside the
  context), and delta: the back-propagated error at the module's output, mean over the output's first
  dimension of the norm of each slice of dL/d(output), times the batch size for a mean-reduced loss
  (`loss_reduction`): each example's own error, as for vgbench's MLP. For an output whose first dimension
  is not the batch (MultiheadAttention with batch_first=False: sequence first) it is the mean over that
  dimension's slices instead. A tuple output is measured at its first tensor.
- An activation is an elementwise activation module (nn.ReLU, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, ELU,
  Softplus, Mish, Hardtanh, ... and vgbench's own): the mean and std of its output, the share of
  (example, unit) whose |f'| is below 1% of its largest value over the reals (f' from autograd, or the
  registry's for vgbench's own), the share of units (every position but the batch dimension) that are 0
  for the whole batch, and the std of its input.
- A module called several times in one forward pass (shared weights) has one gradient (autograd sums the
  uses); its delta and activation statistics are the mean over its calls. A module not called on a
  measured step reports NaN (null in JSON) for what needs a call.
- The run: the total gradient norm, the first-to-last ratios (first and last layer in forward order), and
  the flow verdict (vgbench.flow) at the first and the last measured step.

Gradients are read when autograd accumulates them (post-accumulate-grad hooks), so a `zero_grad` after the
step does not hide them; under a GradScaler (`scaler=`) they and delta are divided by the scale the backward
pass ran under. Everything is computed on the device and reaches the host in one transfer per measured step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from vgbench import theory
from vgbench.activations import Activation, build_activation
from vgbench.errors import UserError, at_least, choice
from vgbench.files import finite_or_none
from vgbench.flow import classify
from vgbench.monitor import (
    HIDDEN_METRICS,
    LAYER_METRICS,
    SATURATION_FRACTION,
    Measurement,
    delta_norms,
    hidden_stats,
    wide,
)
from vgbench.series import WATCH_LAYER_COLUMNS, Series, profile
from vgbench.summary import COMPLETED, write_summary
from vgbench.version import __version__

ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Softplus,
    nn.Mish,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Softsign,
    nn.LogSigmoid,
    nn.Tanhshrink,
    Activation,
)
LOSS_REDUCTIONS = {"mean": True, "sum": False}  # whether delta multiplies dL/d(output) by the batch size


def _first_tensor(output: Any) -> Tensor | None:  # whatever a module returns
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((item for item in output if isinstance(item, Tensor)), None)
    return None


def derivative(module: nn.Module, u: Tensor, closed_form: Activation | None = None) -> Tensor:
    """f'(u) of an elementwise activation module, in float32 or wider: the registry's closed form where the
    module computes one of its functions (`closed_form`, or the module itself), autograd's for any other
    (the gradient of sum f(u) is f'(u) where f is elementwise)."""
    u = wide(u.detach())
    closed_form = module if isinstance(module, Activation) else closed_form
    if closed_form is not None:
        return closed_form.derivative(u)
    with torch.enable_grad():
        leaf = u.requires_grad_()
        # forward, not __call__: no hooks (this runs inside one); + 0: an in-place module may write its input
        (grad,) = torch.autograd.grad(module.forward(leaf + 0).sum(), leaf)
    return grad


def saturated(module: nn.Module, u: Tensor, threshold: float, closed_form: Activation | None = None) -> Tensor:
    """Where |f'(u)| < threshold, as `derivative` finds f': the registry's own test where it has a closed form
    (Activation.saturated)."""
    closed_form = module if isinstance(module, Activation) else closed_form
    if closed_form is not None:
        return closed_form.saturated(wide(u.detach()), threshold)
    return derivative(module, u).abs() < threshold


def max_derivative(module: nn.Module) -> float:
    """sup |f'| over the reals, on a dense grid (the registry's own for vgbench's activations). A function
    without parameters is evaluated once per process for its type and settings; one with parameters (PReLU's
    slope) on its own, in its parameters' dtype and device."""
    if isinstance(module, Activation):
        return module.max_derivative
    parameter = next(module.parameters(), None)
    key = (type(module), module.extra_repr())
    if parameter is None and key in _MAX_DERIVATIVES:
        return _MAX_DERIVATIVES[key]
    dtype, device = (torch.float64, None) if parameter is None else (parameter.dtype, parameter.device)
    largest = float(derivative(module, torch.linspace(-30.0, 30.0, 60_001, dtype=dtype, device=device)).abs().max())
    if parameter is None:
        _MAX_DERIVATIVES[key] = largest
    return largest


_MAX_DERIVATIVES: dict[tuple[type, str], float] = {}


# nn modules whose function is one of vgbench's registry, with the settings the registry takes
REGISTRY_NAMES = {
    nn.Sigmoid: ("sigmoid", ()),
    nn.Tanh: ("tanh", ()),
    nn.ReLU: ("relu", ()),
    nn.SELU: ("selu", ()),
    nn.SiLU: ("silu", ()),
    nn.Mish: ("mish", ()),
    nn.LeakyReLU: ("leaky_relu", ("negative_slope",)),
    nn.ELU: ("elu", ("alpha",)),
    nn.Softplus: ("softplus", ("beta", "threshold")),
    nn.Hardtanh: ("hardtanh", ("min_val", "max_val")),
}


def registry_activation(module: nn.Module) -> Activation | None:
    """The registry's activation computing what `module` computes (theory needs f and f' in closed form)."""
    if isinstance(module, Activation):
        return module
    if isinstance(module, nn.GELU) and module.approximate == "none":
        return build_activation("gelu")
    if type(module) not in REGISTRY_NAMES:
        return None
    name, settings = REGISTRY_NAMES[type(module)]
    return build_activation(name, {setting: float(getattr(module, setting)) for setting in settings})


def predict_plain_mlp(watch: Watch, state: _StepState) -> dict[str, Any] | None:
    """The mean-field prediction (vgbench.theory) for a watched plain MLP: Linear layers and activations
    alternating in the forward pass (Linear, f, Linear, f, ..., Linear), one f of the registry throughout;
    each layer's (sigma_w^2, sigma_b^2) = (fan_in * mean W^2, mean b^2) of its weights as initialised, q0 =
    E[x^2] of the first batch. None for any other model."""
    order = sorted((*watch.layers, *watch.activations), key=lambda item: state.calls.get(item[0], math.inf))
    kinds = [isinstance(module, nn.Linear) for _, module in order]
    if len(order) < 3 or kinds != [index % 2 == 0 for index in range(len(order))] or not kinds[-1]:
        return None
    if any(name not in state.calls for name, _ in order) or state.input_second_moment is None:
        return None
    functions = {(type(module), module.extra_repr()) for _, module in order[1::2]}
    activation = registry_activation(order[1][1])
    if len(functions) > 1 or activation is None or theory.not_applicable_function(activation):
        return None
    variances = []
    for _, linear in order[::2]:
        weight = wide(state.before[id(linear.weight)])
        bias = wide(state.before[id(linear.bias)]).pow(2).mean().item() if linear.bias is not None else 0.0
        variances.append((weight.pow(2).mean().item() * linear.in_features, bias))
    return theory.predict_from_variances(activation, variances, state.input_second_moment.item())


def _is_weight(name: str) -> bool:
    return not name.endswith("bias")


class Watch:
    """What `vgbench.watch` returns: a `step` context for the training loop, and `close`."""

    def __init__(
        self,
        model: nn.Module,
        out_dir: str | Path,
        every_n_steps: int = 100,
        modules: Callable[[str, nn.Module], bool] | Sequence[str] | None = None,
        histogram_every_n_steps: int = 0,
        loss_reduction: str = "mean",
        scaler: torch.amp.GradScaler | None = None,
        writer: Any = None,  # a torch.utils.tensorboard.SummaryWriter of the user's
        tensorboard: bool = True,
        config: dict[str, Any] | None = None,
    ) -> None:
        check_watchable(model)
        at_least("every_n_steps", every_n_steps, 1)
        at_least("histogram_every_n_steps", histogram_every_n_steps, 0)
        choice("loss_reduction", loss_reduction, LOSS_REDUCTIONS)
        self.model: nn.Module | None = model
        self.out_dir = Path(out_dir)
        self.every_n_steps, self.histogram_every_n_steps = every_n_steps, histogram_every_n_steps
        self.per_example = LOSS_REDUCTIONS[loss_reduction]
        self.scaler = scaler
        self.config = config or {}
        keep = _module_filter(modules, model)
        self.layers = [
            (name, module)
            for name, module in model.named_modules()
            if any(True for _ in module.parameters(recurse=False)) and keep(name, module)
        ]
        self.activations = [
            (name, module)
            for name, module in model.named_modules()
            if isinstance(module, ELEMENTWISE) and keep(name, module)
        ]
        if not self.layers:
            raise UserError("vgbench.watch: the model has no module that holds parameters to watch")
        self.closed_forms = {name: registry_activation(module) for name, module in self.activations}
        self.thresholds = {
            name: SATURATION_FRACTION * largest if (largest := max_derivative(module)) > 0 else math.inf
            for name, module in self.activations
        }
        self.series = Series(layer_columns=WATCH_LAYER_COLUMNS)
        self.profiles: dict[str, Any] = {}
        self.measured_steps = 0
        self.theory: dict[str, Any] | None = None
        self.last_extra: dict[str, float] = {}
        self.started = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.tensorboard = None
        if tensorboard or writer is not None:
            from vgbench.tb_writer import TensorBoardWriter  # TensorBoard loads only when it is used

            self.tensorboard = TensorBoardWriter(self.out_dir, len(self.layers), writer=writer)
        self._handles: list[RemovableHandle] = []
        self._ordered = False

    # --- the loop's side ---

    def due(self, step: int) -> bool:
        return step % self.every_n_steps == 0

    @contextlib.contextmanager
    def step(self, step: int) -> Iterator[dict[str, Any]]:
        """Around one training step (forward, backward, the optimizer's step). Yields a dict for scalars to
        log beside the statistics (tensors stay on the device until the step's one transfer). On a step
        that is not measured nothing is registered and nothing runs."""
        if self.model is None:
            raise UserError("vgbench.watch: this watch is closed; call vgbench.watch(model, ...) again")
        extra: dict[str, Any] = {}
        if not self.due(step):
            yield extra
            return
        state = _StepState(self, step)
        self._handles = state.attach()
        try:
            yield extra
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles = []
        self._record(state.measure(extra), state)

    def close(self, final: dict[str, float] | None = None) -> Path:
        """Write summary.json and the series; remove every hook; drop the model. Returns the summary's path.
        `final`: the run's closing metrics (test_acc, ...), beside the last measured step's scalars."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.model = None
        self.series.write(self.out_dir)
        last = self.profiles.get("final")
        summary = {
            "status": COMPLETED,
            "source": "watch",
            "steps": last["step"] + 1 if last else 0,
            "measured_steps": self.measured_steps,
            "wall_time_s": time.perf_counter() - self.started,
            "final": dict(self.last_extra) | (final or {}),
            "first_to_last_grad_ratio": {
                k: (self.profiles.get(k) or {}).get("first_to_last_grad_ratio") for k in ("step0", "final")
            },
            "first_to_last_delta_ratio": {
                k: (self.profiles.get(k) or {}).get("first_to_last_delta_ratio") for k in ("step0", "final")
            },
            "profile": self.profiles,
            "flow": classify(self.profiles.get("step0")),
            "theory": self._compared_theory(),
            "final_flow": classify(last),
            "layer_names": [name for name, _ in self.layers],
            "activation_names": [name for name, _ in self.activations],
            "torch_version": torch.__version__,
            "vgbench_version": __version__,
            "config": self.config,
        }
        if self.tensorboard:
            self.tensorboard.hparams(summary, summary["steps"], columns=self.config)
            self.tensorboard.close()
        return write_summary(self.out_dir, finite_or_none(summary))

    # --- inside ---

    def _record(self, measurement: Measurement, state: _StepState) -> None:
        self.measured_steps += 1
        self.last_extra = measurement.extra
        self.series.add(measurement, None, [n for n, _ in self.layers], [n for n, _ in self.activations])
        kept = profile(measurement)
        if "step0" not in self.profiles:
            self.theory = predict_plain_mlp(self, state)
        self.profiles.setdefault("step0", kept)
        self.profiles["final"] = kept
        if self.tensorboard:
            if self.measured_steps == 1:
                self.tensorboard.names([n for n, _ in self.layers], [n for n, _ in self.activations])
            self.tensorboard.measurement(measurement)

    def _compared_theory(self) -> dict[str, Any]:
        if self.theory is None:
            return {
                "applies": False,
                "reason": "the watched model is not a plain MLP (Linear layers and one "
                "elementwise activation of vgbench's registry in sequence)",
            }
        return theory.compare(self.theory, self.profiles["step0"]["layers"]["delta_norm"])

    def _order_layers(self, calls: dict[str, int]) -> None:
        """Forward order, from the first measured step's calls; an uncalled layer follows its nearest called
        ancestor (named_modules order breaks ties)."""

        def key(item: tuple[int, tuple[str, nn.Module]]) -> tuple[float, int]:
            index, (name, _) = item
            parts = name.split(".")
            for cut in range(len(parts), -1, -1):
                ancestor = ".".join(parts[:cut])
                if ancestor in calls:
                    return (calls[ancestor] + (0 if cut == len(parts) else 0.5), index)
            return (math.inf, index)

        self.layers = [layer for _, layer in sorted(enumerate(self.layers), key=key)]
        self.activations = [a for _, a in sorted(enumerate(self.activations), key=key)]
        self._ordered = True


def _module_filter(
    modules: Callable[[str, nn.Module], bool] | Sequence[str] | None, model: nn.Module
) -> Callable[[str, nn.Module], bool]:
    """`modules`: None (every layer and activation), a predicate on (name, module), or qualified names (each
    with everything under it)."""
    if modules is None:
        return lambda name, module: True
    if callable(modules):
        return modules
    names = dict(model.named_modules())
    unknown = [name for name in modules if name not in names]
    if unknown:
        shown = ", ".join(name for name in list(names)[1:9])
        raise UserError(f"vgbench.watch: modules={unknown} are not in the model; its modules include: {shown}, ...")
    prefixes = tuple(modules)
    return lambda name, module: any(name == p or name.startswith(p + ".") for p in prefixes)


def check_watchable(model: Any) -> None:  # what the user passed
    """One line for what watch cannot measure, with what to do instead."""
    if not isinstance(model, nn.Module):
        raise UserError(f"vgbench.watch needs a torch.nn.Module, not {type(model).__name__}")
    if hasattr(model, "_orig_mod"):  # torch.compile's wrapper
        raise UserError(
            "vgbench.watch: this model is torch.compile'd; hooks added and removed on measured steps would make it "
            "recompile. Watch the module before compiling it: vgbench.watch(model, ...), then torch.compile(model)"
        )
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        raise UserError(
            f"vgbench.watch: the model is wrapped in {type(model).__name__}, whose gradients are reduced across "
            "replicas by hooks of its own; watch model.module on one process (its gradients are that replica's)"
        )


class _StepState:
    """What one measured step gathers through its hooks, on the device, and the measurement made of it."""

    def __init__(self, watch: Watch, step: int) -> None:
        self.watch, self.step = watch, step
        self.calls: dict[str, int] = {}  # module name -> order of its first call
        self.batch: int | None = None
        self.deltas: dict[str, list[Tensor]] = {name: [] for name, _ in watch.layers}  # per call: [slices] norms
        self.hidden: dict[str, list[Tensor]] = {name: [] for name, _ in watch.activations}  # per call: [5]
        self.inputs: dict[str, Tensor] = {}
        self.grad_sq: dict[int, Tensor] = {}  # id(param) -> ||grad||^2, as accumulated
        self.grads: dict[int, Tensor] = {}  # id(param) -> grad, for histograms
        self.histograms = watch.histogram_every_n_steps > 0 and step % watch.histogram_every_n_steps == 0
        self.device = next(iter(watch.model.parameters())).device
        self.before = {  # each parameter before the step: the update ratio, the theory's variances
            id(p): p.detach().clone() for _, module in watch.layers for p in module.parameters(recurse=False)
        }
        self.input_second_moment: Tensor | None = None  # E[x^2] of the first layer's input (the theory's q0)
        scaler = watch.scaler
        enabled = scaler is not None and scaler.is_enabled()
        # the scale this backward runs under, read on the device before the scaler's update() changes it
        self.loss_scale = scaler.scale(torch.ones((), device=self.device)) if enabled else None

    def attach(self) -> list[RemovableHandle]:
        model = self.watch.model
        handles = [model.register_forward_pre_hook(self._batch)]
        for name, module in self.watch.layers:
            handles.append(module.register_forward_hook(self._layer_output(name)))
            for pname, param in module.named_parameters(recurse=False):
                if param.requires_grad:
                    handles.append(param.register_post_accumulate_grad_hook(self._grad(pname)))
        for name, module in self.watch.activations:
            handles.append(module.register_forward_pre_hook(self._activation_input(name)))
            handles.append(module.register_forward_hook(self._activation_output(name, module)))
        return handles

    def per_example(self) -> float | Tensor:
        """What turns dL/d(output) into each example's own error: the batch size for a mean-reduced loss,
        divided by the loss scale the backward pass runs under."""
        batch = (self.batch or 1) if self.watch.per_example else 1
        return batch if self.loss_scale is None else batch / self.loss_scale.float()

    # hooks: each stores a few device tensors, none syncs with the host

    def _batch(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self.batch is None:
            first = _first_tensor(args)
            self.batch = first.shape[0] if first is not None and first.dim() > 0 else 1

    def _layer_output(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not self.calls and (first := _first_tensor(args)) is not None:
                self.input_second_moment = wide(first.detach()).pow(2).mean()
                self._batch(module, args)  # when the model's own forward was not called (a submodule was)
            self.calls.setdefault(name, len(self.calls))
            tensor = _first_tensor(output)
            if tensor is not None and tensor.requires_grad:
                deltas = self.deltas[name]
                tensor.register_hook(
                    lambda grad: deltas.append(delta_norms([grad.unsqueeze(0)], self.per_example())[0, 0])
                )

        return hook

    def _grad(self, pname: str) -> Callable[[Tensor], None]:
        def hook(param: Tensor) -> None:
            self.grad_sq[id(param)] = wide(param.grad).pow(2).sum()
            if self.histograms and _is_weight(pname):
                self.grads[id(param)] = param.grad.detach().flatten().clone()

        return hook

    def _activation_input(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            self.inputs[name] = args[0].detach().clone()  # before an in-place module overwrites it

        return hook

    def _activation_output(self, name: str, activation: nn.Module) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            self.calls.setdefault(name, len(self.calls))
            u = self.inputs.pop(name)
            batch = u.shape[0] if u.dim() > 0 else 1
            shape = (1, batch, -1)
            stats = hidden_stats(
                torch.stack([u.reshape(shape), output.detach().reshape(shape)]),  # widened there
                saturated(activation, u, self.watch.thresholds[name], self.watch.closed_forms[name]).reshape(shape),
            )
            self.hidden[name].append(stats[:, 0])

        return hook

    @torch.no_grad()
    def measure(self, extra: dict[str, Any]) -> Measurement:
        """The step's statistics from what the hooks gathered, brought to the host in one transfer."""
        watch, device = self.watch, self.device
        if not watch._ordered:
            watch._order_layers(self.calls)
        nan = torch.full((), math.nan, device=device)
        unscale = 1.0 if self.loss_scale is None else 1.0 / self.loss_scale.float()

        def norm(squares: list[Tensor]) -> Tensor:
            return torch.sqrt(torch.stack(squares).sum()) if squares else nan

        columns: list[list[Tensor]] = [[] for _ in LAYER_METRICS]
        histogram_parts = []
        for name, module in watch.layers:
            params = list(module.named_parameters(recurse=False))
            weights = [p for n, p in params if _is_weight(n)]
            biases = [p for n, p in params if not _is_weight(n)]
            grad_w = norm([self.grad_sq[id(p)] for p in weights if id(p) in self.grad_sq]) * unscale
            grad_b = norm([self.grad_sq[id(p)] for p in biases if id(p) in self.grad_sq]) * unscale
            weight = norm([wide(self.before[id(p)]).pow(2).sum() for p in weights])
            update = norm([wide(p - self.before[id(p)]).pow(2).sum() for p in weights])
            calls = self.deltas[name]
            delta = torch.stack(calls).mean() if calls else nan
            for column, value in zip(columns, (grad_w, grad_b, grad_w / weight, update / weight, delta), strict=True):
                column.append(value)
            if self.histograms and any(id(p) in self.grads for p in weights):
                histogram_parts.append(torch.cat([self.grads[id(p)] for p in weights if id(p) in self.grads]))
        table = [torch.stack(column) for column in columns]
        if watch.activations:  # [metric, activation], each the mean over the activation's calls
            table.append(
                torch.stack(
                    [
                        torch.stack(calls).mean(dim=0)
                        if (calls := self.hidden[name])
                        else nan.expand(len(HIDDEN_METRICS))
                        for name, _ in watch.activations
                    ]
                )
                .t()
                .flatten()
            )
        grad_w, deltas = table[0], table[LAYER_METRICS.index("delta_norm")]
        measured = deltas[~torch.isnan(deltas)]  # the first and last layers whose output was measured
        total = norm(list(self.grad_sq.values())) * unscale
        table.append(torch.stack([total, grad_w[0] / grad_w[-1], measured[0] / measured[-1] if len(measured) else nan]))
        table.append(
            torch.stack(
                [wide(torch.as_tensor(v, device=device)).detach().reshape(()) for v in extra.values()] or [nan]
            )[: len(extra)]
        )
        flat = torch.cat([part.float().flatten() for part in table])
        host = torch.cat([flat, *(part.float() for part in histogram_parts)]).cpu()  # the one device-to-host transfer
        values = host[: flat.numel()].tolist()
        n_layers, n_activations = len(watch.layers), len(watch.activations)
        layers = {metric: values[i * n_layers : (i + 1) * n_layers] for i, metric in enumerate(LAYER_METRICS)}
        values = values[len(LAYER_METRICS) * n_layers :]
        layers |= {
            metric: values[i * n_activations : (i + 1) * n_activations] for i, metric in enumerate(HIDDEN_METRICS)
        }
        values = values[len(HIDDEN_METRICS) * n_activations :]
        histograms = (
            list(host[flat.numel() :].split([part.numel() for part in histogram_parts])) if histogram_parts else []
        )
        return Measurement(
            self.step,
            layers,
            values[0],
            values[1],
            values[2],
            dict(zip(extra, values[3:], strict=True)),
            {"grad/weight": histograms} if histograms else {},
        )
