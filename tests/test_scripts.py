"""The scripts a user runs by hand: the GPU check fails in one line where there is no GPU."""

import subprocess

import pytest
import torch

from tests.conftest import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_gpu_check_fails_in_one_line_without_cuda(tmp_path):
    result = subprocess.run([REPO / "scripts" / "gpu_check.sh"], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "GPU_CHECK_OUT": str(tmp_path / "out")})  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ("gpu_check: no CUDA device here (torch.cuda.is_available() is false); run it on a "
                             "machine with an NVIDIA GPU\n")  # fmt: skip
    assert not list((tmp_path / "out").glob("*.json"))
