"""The command line's launcher process stays light: the trainer and torch load inside each job."""

import subprocess
import sys


def test_app_module_imports_no_torch():
    probe = "import sys, vgbench.app; print(sorted(m for m in ('torch', 'vgbench.train') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_cfg_job_prints_the_composed_config_without_running(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vgbench.app", "--cfg", "job", "activation=sigmoid",
                             "model.depth=10"], cwd=tmp_path, capture_output=True, text=True, check=True)  # fmt: skip
    assert "name: sigmoid" in result.stdout and "depth: 10" in result.stdout
    assert not (tmp_path / "outputs").exists()  # nothing ran, nothing written
