"""The scripts a user runs by hand: the GPU check fails in one line where there is no GPU; the epoch profile
accounts for the trainer's epoch."""

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_gpu_check_fails_in_one_line_without_cuda(tmp_path):
    result = subprocess.run(
        [REPO / "scripts" / "gpu_check.sh"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "GPU_CHECK_OUT": str(tmp_path / "out")},
    )
    assert result.returncode == 1
    assert result.stdout == (
        "gpu_check: no CUDA device here (torch.cuda.is_available() is false); run it on a machine with an NVIDIA GPU\n"
    )
    assert not list((tmp_path / "out").glob("*.json"))


def test_gpu_check_runs_only_the_steps_asked_for(tmp_path):
    """GPU_CHECK_ONLY (a short lease's part of the check) and GPU_CHECK_SKIP choose the steps; a stand-in
    for Python that says CUDA is there records what each step would run."""
    stand_in = tmp_path / "python"
    calls = tmp_path / "calls"
    stand_in.write_text(f'#!/bin/sh\necho "$*" >> {calls}\ncase "$*" in *cache_from_source*) echo /x;; esac\n')
    stand_in.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(stand_in), "GPU_CHECK_OUT": str(tmp_path / "out")}
    env |= {"GPU_CHECK_ONLY": "cuda_tests,scale", "GPU_CHECK_SKIP": "scale"}
    result = subprocess.run([REPO / "scripts" / "gpu_check.sh"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    finished = [line for line in result.stdout.splitlines() if " exit 0 in " in line]
    assert [line.split(":")[0].removeprefix("=== ") for line in finished] == ["cuda_tests"]
    assert "=== scale: skipped (GPU_CHECK_SKIP)" in result.stdout
    assert "=== monitor: skipped (not in GPU_CHECK_ONLY)" in result.stdout
    ran = calls.read_text()
    assert "-m pytest -q -m cuda" in ran and "bench_monitor" not in ran and "bench_stacked" not in ran


@pytest.mark.slow
def test_profile_epoch_times_every_phase_of_the_trainers_epoch(tmp_path):
    """scripts/profile_epoch.py wraps the trainer's own functions: each phase is found and timed, and
    together they account for the epoch (what is left, the loop's own Python, is small)."""
    out = tmp_path / "phases.json"
    subprocess.run(
        [
            sys.executable,
            REPO / "scripts" / "profile_epoch.py",
            "--device",
            "cpu",
            "--runs",
            "2",
            "--epochs",
            "3",
            "--limit-train",
            "640",
            "--json",
            out,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    result = json.loads(out.read_text())
    phases = result["phases_seconds_per_epoch"]
    for name in ("op_by_op", "measured", "held_out", "to_host", "series", "checkpoints"):
        assert phases[name] > 0, name
    assert 0 <= phases["other"] < 0.25 * result["epoch_seconds"]
    assert "train_epoch" in result["cprofile"]


def test_the_scale_benchmark_counts_an_mlp_steps_flops_as_torch_does():
    """bench_stacked.py --mode scale's useful work, against torch's own count of the matrix products of a
    10x128 MLP's forward and backward pass on MNIST-sized input that needs no gradient."""
    import importlib.util

    from torch.utils.flop_counter import FlopCounterMode

    spec = importlib.util.spec_from_file_location("bench_stacked", REPO / "scripts" / "bench_stacked.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sizes = [784, *[128] * 10, 10]
    layers = [torch.nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
    model = torch.nn.Sequential(*[m for layer in layers for m in (layer, torch.nn.ReLU())][:-1])
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(64, 784)).sum().backward()
    assert bench.training_flops(sizes, 64) == counter.get_total_flops()


def test_the_scale_benchmark_times_a_stacks_steps_alone(monkeypatch):
    """bench_stacked.py's `step_seconds` (the steady state of the device's work at each K) trains the stack
    it times: K runs, their weights moved by the timed steps, nothing written."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_stacked", REPO / "scripts" / "bench_stacked.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from vgbench import train

    built, setup = [], train.setup
    monkeypatch.setattr(train, "setup", lambda *args, **kwargs: built.append(setup(*args, **kwargs)) or built[-1])
    shape = ["data=synthetic", "data.num_train=256", "model.depth=3", "model.width=16"]
    seconds = bench.step_seconds(3, "cpu", steps=4, overrides=shape)
    [stack] = built
    assert seconds > 0 and len(stack.runs) == 3 and stack.monitor is None
    assert stack.optimizer.steps == 5 + 4 and stack.seeds == [0, 1, 2]
