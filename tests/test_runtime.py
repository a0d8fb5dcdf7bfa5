"""Where a run computes (vgbench.runtime): the device a name and a launcher's GPU slot resolve to."""

import pytest
import torch

import vgbench.runtime
from vgbench.errors import ConfigError
from vgbench.placement import gpu_slot
from vgbench.runtime import apply_job_settings, check_device_name, configure_threads, resolve_device


def fake_gpus(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_only_local_launchers_map_jobs_to_gpus(monkeypatch):
    local = {"_target_": "hydra_plugins.vgbench_launchers.parallel.ParallelLauncher", "n_jobs": 8}
    slurm = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}
    ray = {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"}
    fake_gpus(monkeypatch, 4)
    assert [str(resolve_device("auto", gpu_slot(local, job))) for job in range(6)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:3",
        "cuda:0",
        "cuda:1",
    ]
    assert str(resolve_device("cuda", gpu_slot(local, 5))) == "cuda:1"
    for engine in (slurm, ray):  # the engine's allocation (CUDA_VISIBLE_DEVICES) decides: its first GPU
        assert gpu_slot(engine, 5) is None
        assert str(resolve_device("cuda", gpu_slot(engine, 5))) == "cuda"
    assert str(resolve_device("cuda:2")) == "cuda:2"
    with pytest.raises(ConfigError, match=r"trainer.device='cuda:4' but only 4 CUDA device\(s\) are visible"):
        resolve_device("cuda:4")


def test_cuda_with_none_allocated_is_an_error_and_auto_says_so(monkeypatch, caplog):
    fake_gpus(monkeypatch, 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError, match="no CUDA device is visible here .*the launcher allocated this job none"):
        resolve_device("cuda")
    assert str(resolve_device("auto")) == "cpu"
    assert "allocated this job no GPU" in caplog.text


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:3", "mps"])
def test_device_names_that_are_valid(name):
    check_device_name(name)


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "CPU"])
def test_device_names_that_are_not_name_the_choices(name):
    with pytest.raises(ConfigError, match=f"trainer.device='{name}' is not valid; choose one of: auto, cpu, cuda"):
        check_device_name(name)


def test_threads_auto_takes_the_launchers_share_or_every_core(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(vgbench.runtime, "available_cores", lambda: 6)
        assert configure_threads("auto") == 6 and torch.get_num_threads() == 6
        assert configure_threads("auto", launcher_threads=2) == 2 and torch.get_num_threads() == 2
        assert configure_threads(3, launcher_threads=2) == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_job_settings_seed_the_global_generator_and_set_determinism_both_ways():
    apply_job_settings(7, deterministic=True)
    first = torch.rand(3)
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    apply_job_settings(7, deterministic=False)
    assert torch.equal(torch.rand(3), first)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


def test_job_settings_set_tensorfloat32_for_cuda_matmuls_both_ways():
    """trainer.tf32 sets the flag of CUDA's float32 matmuls, and the next job's setting replaces it."""
    try:
        apply_job_settings(0, deterministic=False, tf32=True)
        assert torch.backends.cuda.matmul.allow_tf32
        apply_job_settings(0, deterministic=False)
        assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"  # the CPU's float32 products stay IEEE
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
