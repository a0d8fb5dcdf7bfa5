"""How many runs of one shape fit in one stack: each run's memory, estimated from its config, against
the share of its device's free memory the launcher gives the stack.

A run in a stack holds, in float32 (under amp too: the weights, gradients and optimizer state stay
float32, and the estimate does not count on 16-bit activations):
- its parameters, each with what a step holds beside it (the optimizer's `floats_per_parameter`: the
  gradient, the state buffers, the temporaries of its formula; on the monitor's measured steps, the
  gradients' copy for the histograms);
- the larger of a training step's activations and an evaluation batch's;
- when its step is replayed from a CUDA graph (trainer.cuda_graphs, on CUDA by default), a second
  training step's activations, gradients and temporaries: the graph's pool keeps them (vgbench.graphs);
  with the monitor on, a third in the measured steps' graph's pool, with the statistics' temporaries
  (MEASURED_GRAPH_FLOATS_PER_UNIT); and once per stack, cuBLAS's workspace for the side stream the graphs
  are warmed up and captured on (GRAPH_STREAM_BYTES).
The data is shared by every run and is already on the device when the free memory is read
(vgbench.train.prepare sets it up once for the planner and the stacks).
A stack that would not fit is trained as several smaller ones, one after another: nothing is refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from omegaconf import DictConfig

from vgbench.config import hidden_widths
from vgbench.data import Data
from vgbench.graphs import will_graph
from vgbench.optim import OPTIMIZERS
from vgbench.placement import available_memory

log = logging.getLogger(__name__)

FLOAT_BYTES = 4
# Per example and hidden unit, in a training step at most: the layer's output z, the activation a (the
# next layer's saved input), the gradient of z the monitor keeps on its measured steps, two gradients in
# flight in the backward pass; with the options on, the norm's input copy and output, the dropout's
# output (its mask is bytes), the residual sum. tests/test_memory.py checks them against what a step holds.
TRAIN_FLOATS_PER_UNIT = 5
NORM_FLOATS_PER_UNIT, DROPOUT_FLOATS_PER_UNIT, RESIDUAL_FLOATS_PER_UNIT = 2, 1, 1
# Per parameter on the monitor's measured steps: the histograms' copy of the gradients (the weights' norms
# before the update are taken before it: GradientMonitor.weight_norms).
MONITOR_FLOATS_PER_PARAMETER = 1
# Per example and unit of the widest hidden layer, the statistics' temporaries in the measured steps' graph:
# u and a of a group of layers stacked, their deviations from the mean, the saturation test's (a group is
# one layer at most once a layer's K x B x width passes vgbench.monitor.STACKED_ELEMENTS)
MEASURED_GRAPH_FLOATS_PER_UNIT = 5
# A graphed stack's side stream: cuBLAS keeps a workspace per stream, 32 MiB with torch's default on Hopper
# (CUBLAS_WORKSPACE_CONFIG; less on older GPUs); tests/test_memory.py measures it on the GPU at hand.
GRAPH_STREAM_BYTES = 64 * 2**20
# Per example of an evaluation batch (no autograd): the widest layer's input and output, and its norm's output.
EVAL_FLOATS_PER_UNIT = 3


def parameters_per_run(cfg: DictConfig, num_features: int, num_classes: int) -> int:
    """One run's parameters: each layer's weights and biases, and the norm's gain and shift."""
    widths = hidden_widths(cfg.model)
    sizes = [num_features, *widths, num_classes]
    linear = sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True))
    return linear + (2 * sum(widths) if cfg.model.norm != "none" else 0)


def run_bytes(cfg: DictConfig, num_features: int, num_classes: int, graphed: bool = False) -> int:
    """Bytes one run of this config takes in a stack, at most. `graphed`: its steps are replayed from CUDA
    graphs (vgbench.graphs), whose memory pools keep a training step's activations, gradients and the
    update's temporaries for good (the measured steps' graph, with the monitor on, its statistics' too),
    beside what the steps launched op by op take."""
    widths = hidden_widths(cfg.model)
    parameters = parameters_per_run(cfg, num_features, num_classes)
    per_parameter = OPTIMIZERS[cfg.optimizer.name].floats_per_parameter(cfg.optimizer)
    per_parameter += MONITOR_FLOATS_PER_PARAMETER if cfg.monitor.enabled else 0
    model = cfg.model
    per_unit = TRAIN_FLOATS_PER_UNIT + NORM_FLOATS_PER_UNIT * (model.norm != "none")
    per_unit += DROPOUT_FLOATS_PER_UNIT * (model.dropout > 0) + RESIDUAL_FLOATS_PER_UNIT * model.residual
    train = cfg.data.batch_size * (num_features + per_unit * sum(widths) + 4 * num_classes)
    evaluate = cfg.data.eval_batch_size * (num_features + EVAL_FLOATS_PER_UNIT * max(widths) + 2 * num_classes)
    graph = train + parameters * (per_parameter - 1) if graphed else 0  # all but the weights themselves
    if graphed and cfg.monitor.enabled:  # the measured steps' graph: as much again, and the statistics'
        graph = 2 * graph + MEASURED_GRAPH_FLOATS_PER_UNIT * cfg.data.batch_size * max(widths)
    return FLOAT_BYTES * (parameters * per_parameter + max(train, evaluate) + graph)


def free_bytes(device: torch.device) -> int | None:
    """Memory this process may still take on `device`: CUDA's free memory plus what PyTorch's caching
    allocator holds unused; on the CPU, `vgbench.placement.available_memory`; None where it cannot be
    told (MPS shares the machine's memory with everything else)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "cpu":
        return available_memory()
    return None


def size_text(size: float) -> str:
    """'36.0 GB', '420.5 MB', '12.0 kB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 1e3:.1f} kB"


def stack_sizes(cfgs: Sequence[DictConfig], memory_share: float | None, device: torch.device, data: Data) -> list[int]:
    """How to train these runs of one shape (in order) on `device`, where `data` already is: the sizes of
    the stacks, one after another, so that each fits in `memory_share` of the device's free memory. One
    stack of all when there is no share (a run alone, a parallel launcher's job) or the free memory cannot
    be told."""
    if memory_share is None or len(cfgs) == 1:
        return [len(cfgs)]
    shape = cfgs[0]
    free = free_bytes(device)
    if free is None:
        return [len(cfgs)]
    graphed = will_graph(shape, device)
    free = max(0, free - GRAPH_STREAM_BYTES) if graphed else free
    per_run = max(run_bytes(cfg, data.num_features, data.num_classes, graphed) for cfg in cfgs)
    budget = memory_share * free
    fit = max(1, int(budget // per_run))
    if fit >= len(cfgs):
        return [len(cfgs)]
    stacks = math.ceil(len(cfgs) / fit)
    sizes = [len(cfgs) // stacks + (1 if i < len(cfgs) % stacks else 0) for i in range(stacks)]  # balanced
    log.warning(
        "memory: %d runs of this shape need about %s as one stack, and it may plan for %s of the %s "
        "free on %s (hydra.launcher.memory_fraction); training them as %d stacks of up to %d, one after "
        "another",
        len(cfgs),
        size_text(per_run * len(cfgs)),
        size_text(budget),
        size_text(free),
        device,
        stacks,
        sizes[0],
    )
    if per_run > budget:
        log.warning(
            "memory: one run of this shape needs about %s, more than the %s it may plan for on %s",
            size_text(per_run),
            size_text(budget),
            device,
        )
    return sizes
