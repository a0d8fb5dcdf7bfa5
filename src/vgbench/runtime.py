"""Where and how a run computes: device choice, CPU threads, per-job settings.

The launcher decides a job's threads and GPU slot (vgbench.placement); this module applies them. `cuda`
is the first GPU the process sees (the one the engine allocated), and `cuda` with none visible is an
error, never a GPU nobody allocated.
"""

from __future__ import annotations

import logging
import os

# cuBLAS reads this when CUDA starts in the process; set before any job can touch the GPU, so that a
# later job of the same process may turn deterministic algorithms on (trainer.deterministic)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402 - after the environment above

from vgbench.errors import ConfigError  # noqa: E402
from vgbench.placement import available_cores  # noqa: E402

log = logging.getLogger(__name__)

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def check_device_name(name: str) -> None:
    if name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit()):
        return
    raise ConfigError(f"trainer.device={name!r} is not valid; choose one of: {DEVICE_CHOICES}")


def resolve_device(name: str, gpu_slot: int | None = None) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; asking for a device that is not there is an error.

    `gpu_slot`: given by a local parallel launcher only (this job's number there); with several visible
    GPUs, `auto` and `cuda` then mean GPU `gpu_slot mod count`.
    """
    check_device_name(name)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name in ("auto", "cuda") and gpu_slot is not None and count > 1:
        return torch.device(f"cuda:{gpu_slot % count}")
    if name == "auto":
        if count:
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
            log.warning(
                "trainer.device=auto: the launcher allocated this job no GPU (CUDA_VISIBLE_DEVICES is "
                "empty), so it runs on the CPU; ask for GPUs with hydra.launcher.gpus_per_node (SLURM) "
                "or hydra.launcher.ray.remote.num_gpus (Ray)"
            )
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("trainer.device='mps' but MPS is not available here; use auto or cpu")
        return torch.device("mps")
    if not count:
        hidden = (
            " (CUDA_VISIBLE_DEVICES is empty: the launcher allocated this job none)"
            if os.environ.get("CUDA_VISIBLE_DEVICES") == ""
            else ""
        )
        raise ConfigError(f"trainer.device={name!r} but no CUDA device is visible here{hidden}; use auto or cpu")
    index = int(name[5:]) if ":" in name else 0
    if index >= count:
        raise ConfigError(
            f"trainer.device={name!r} but only {count} CUDA device(s) are visible: use cuda:0 to cuda:{count - 1}"
        )
    return torch.device(name)


def configure_threads(cpu_threads: int | str, launcher_threads: int | None = None) -> int:
    """Set torch's intra-op threads; call before the first tensor operation.

    `auto`: the threads a parallel launcher gives each job (`threads_per_job`), else every core this
    process may use (a lone run, or the basic launcher's one-at-a-time sweep).
    """
    threads = (launcher_threads or available_cores()) if cpu_threads == "auto" else int(cpu_threads)
    torch.set_num_threads(threads)
    return threads


def apply_job_settings(seed: int, deterministic: bool, tf32: bool = False) -> None:
    """Every job sets its own state, so that nothing leaks from an earlier job of the same process (the
    basic launcher, reused joblib workers): the seed, determinism, and TensorFloat-32 for CUDA's float32
    matrix products (trainer.tf32; the flag of CUDA's matmuls alone, which leaves the CPU's and cuDNN's be)."""
    torch.manual_seed(seed)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # the call imports torch._dynamo, a slow import
        torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False
