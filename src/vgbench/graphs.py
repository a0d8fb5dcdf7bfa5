"""The training step replayed from a CUDA graph (`trainer.cuda_graphs`: on CUDA by default).

On a GPU a small network's step is bound by the host launching its kernels, one by one: the device works
a fraction of the step's time. A CUDA graph records the step's kernels once and launches them all with
one call (scripts/profile_stack.py measures both; docs/performance.md has the figures).

The trainer's step on the device (vgbench.train.device_step: gather the batch, forward, loss, backward,
update, the epoch's running sums) is captured as it is, on a full batch, and replayed with each batch's
indices copied into the graph's input; it reads and writes the same parameters, optimizer state and sums,
so a replayed step and one launched op by op are the same step. The monitor's measured steps have a graph
of their own: the same step with the forward's trace, the kept gradients and updates, and the statistics
written into the graph's output table (`GraphedStep.output`), which the trainer copies to the host after
each replay, in one transfer that it reads a measured step later (vgbench.train.record). Each graph keeps
its own memory pool; the two share the side stream. What a graph cannot hold runs op by op:
- the last, smaller batch of an epoch, and measured steps with histograms or the Jacobian (their values
  are read per run on the host);
- the first WARMUP_STEPS steps of each kind before its capture, on the side stream, as torch requires;
- a stack a run has left (it diverged): its parameters are new tensors, so each step is captured again.

Some steps cannot be captured at all (`why_not_graphed`): fp16's loss scaler reads its overflow flag on
the host every step, Adam's bias corrections come from the host's step count, and dropout draws each
run's masks from its own generator. Those stacks train op by op (with a warning when trainer.cuda_graphs
is true rather than the default null); so does each kind of step whose capture fails, with a warning
(`CaptureError`: an operation that syncs with the host, in a custom activation say).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torch import Tensor

WARMUP_STEPS = 2  # op by op on a side stream before a capture: cuBLAS's and the allocator's first use


def why_not_graphed(cfg: DictConfig, device: torch.device) -> str | None:
    """Why this run's step cannot be replayed from a CUDA graph, or None when it can."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, not {device}"
    if cfg.trainer.amp == "fp16":
        return "trainer.amp=fp16: the loss scaler reads its overflow flag on the host every step"
    if cfg.optimizer.name == "adam":
        return "optimizer=adam: its bias corrections come from the host's step count"
    if cfg.model.dropout > 0:
        return "model.dropout > 0: each run's masks come from its own generator"
    return None


def will_graph(cfg: DictConfig, device: torch.device) -> bool:
    """Whether this run's step is replayed from a CUDA graph: trainer.cuda_graphs is not false, and it can be."""
    return cfg.trainer.cuda_graphs is not False and why_not_graphed(cfg, device) is None


class CaptureError(RuntimeError):
    """The step could not be captured (an operation in it syncs with the host: a custom activation's, say).
    Nothing of the step ran; the trainer takes it op by op, and the rest of the run's steps of its kind too."""


class GraphedStep:
    """A stack's step on a full batch: warmed up, captured once, then replayed.

    `step(indices)` is the trainer's step on the batch whose example indices ([K, batch]) it is given;
    it must leave its results in tensors that outlive it (parameters, optimizer state, running sums), and
    what it returns is `output` after each call (a replay writes into the very tensor). `side_stream`: where
    it warms up and is captured; a stack's graphs share one (cuBLAS keeps a workspace per stream).
    """

    def __init__(
        self,
        step: Callable[[Tensor], Tensor | None],
        runs: int,
        batch_size: int,
        device: torch.device,
        side_stream: torch.cuda.Stream | None = None,
    ) -> None:
        self.step, self.batch_size, self.device = step, batch_size, device
        self.side_stream = side_stream or torch.cuda.Stream(device)
        self.captures = self.replays = 0
        self.output: Tensor | None = None
        self.reset(runs)

    def reset(self, runs: int) -> None:
        """Forget the graph (a run left the stack: the parameters are new tensors); warm up and capture
        again from the next full batch."""
        self.indices = torch.zeros(runs, self.batch_size, dtype=torch.long, device=self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmup_left = WARMUP_STEPS

    def __call__(self, indices: Tensor) -> bool:
        """One step on the batch at `indices`: replayed, or while there is no graph yet, warmed up or
        captured (then replayed: capturing records the kernels without running them). True when the
        step was only replayed: its Python did not run, so the caller keeps its host-side count."""
        self.indices.copy_(indices)
        if self.graph is None and self.warmup_left > 0:
            self.side_stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.side_stream):
                self.output = self.step(self.indices)
            torch.cuda.current_stream(self.device).wait_stream(self.side_stream)
            self.warmup_left -= 1
            return False
        if self.graph is None:
            graph = torch.cuda.CUDAGraph()
            try:
                # on the warm-up's stream: each stream cuBLAS runs on holds its own workspace (32 MiB on Hopper)
                with torch.cuda.graph(graph, stream=self.side_stream):
                    self.output = self.step(self.indices)
            except RuntimeError as error:  # recorded, not run: the parameters, state and sums are untouched
                raise CaptureError(str(error).splitlines()[0] if str(error) else type(error).__name__) from error
            self.graph = graph
            self.captures += 1
            self.replay()
            return False
        self.replay()
        return True

    def replay(self) -> None:
        self.graph.replay()
        self.replays += 1
