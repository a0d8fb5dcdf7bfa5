"""Installed from a wheel, vgbench works as from the checkout: configs inside the wheel, from another folder."""

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO

TINY = [
    "data=synthetic",
    "data.num_train=256",
    "data.num_test=64",
    "model.width=16",
    "trainer.epochs=1",
    "trainer.device=cpu",
]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """A fresh environment holding only the wheel (installed without -e); the dependencies come from this
    environment's site-packages through a .pth line, so nothing is downloaded or copied."""
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = list((root / "dist").glob("vgbench-*.whl"))
    env = root / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # after the wheel's own files: this environment's packages, without its editable vgbench (a plain path in a
    # .pth file does not run the .pth files of that folder, which is where the editable install hooks in)
    Path(purelib, "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    return wheel, env


def run_installed(env: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VGBENCH_CONFIG_DIR")}
    return subprocess.run(
        [env / "bin" / "vgbench-train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**clean, "PYTHONUNBUFFERED": "1"},
        timeout=600,
    )


@pytest.mark.slow
def test_the_wheel_carries_the_configs_and_runs_outside_the_repository(wheel_env, tmp_path):
    wheel, env = wheel_env
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "vgbench/conf/config.yaml" in names and "vgbench/conf/experiment/vanishing.yaml" in names
    assert "vgbench/conf/hydra/launcher/stacked.yaml" in names
    assert "hydra_plugins/vgbench_launchers/stacked.py" in names
    assert "hydra_plugins/vgbench_launchers/sweeper.py" in names  # the default sweeper (conf/config.yaml)
    where = subprocess.run(
        [env / "bin" / "python", "-c", "import vgbench, vgbench.config as c; print(vgbench.__file__, c.CONF_DIR)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert str(REPO) not in where  # the installed files, not the checkout's

    job = run_installed(env, tmp_path, "--cfg", "job", "experiment=vanishing")
    assert job.returncode == 0, job.stderr[-2000:]
    assert "width: 128" in job.stdout and "resume: true" in job.stdout
    single = run_installed(env, tmp_path, *TINY, "hydra.run.dir=single")
    assert single.returncode == 0, single.stderr[-2000:]
    assert (tmp_path / "single" / "summary.json").exists()
    sweep = run_installed(
        env, tmp_path, "-m", *TINY, "model.depth=1,2", "hydra/launcher=stacked", "hydra.sweep.dir=sweep"
    )
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert len(list((tmp_path / "sweep").glob("*/summary.json"))) == 2
    version = run_installed(env, tmp_path, "--version")
    assert version.stdout.startswith("vgbench ") and "+unknown" not in version.stdout


def write_user_configs(folder: Path) -> Path:
    (folder / "experiment").mkdir(parents=True)
    (folder / "experiment" / "my_sweep.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /data: synthetic\nhydra:\n  mode: MULTIRUN\n  sweeper:\n"
        "    params:\n      model.depth: 1,2\nmodel:\n  width: 16\ntrainer:\n  epochs: 1\n  device: cpu\n"
    )
    (folder / "hydra" / "launcher").mkdir(parents=True)
    (folder / "hydra" / "launcher" / "my_cluster.yaml").write_text(
        "defaults:\n  - stacked_slurm\n\nsubmitit:\n  slurm_partition: gpu-large\n  timeout_min: 240\n"
    )
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("how", ["--config-dir", "VGBENCH_CONFIG_DIR"])
def test_a_users_own_configs_beside_ours(tmp_path, how):
    from tests.conftest import run_app

    mine = write_user_configs(tmp_path / "my_configs")
    env = {"VGBENCH_CONFIG_DIR": str(mine)} if how == "VGBENCH_CONFIG_DIR" else {}
    flag = ["--config-dir", str(mine)] if how == "--config-dir" else []
    result = run_app(*flag, "experiment=my_sweep", f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.parent.name for p in (tmp_path / "sweep").glob("*/summary.json")) == [
        "model.depth=1",
        "model.depth=2",
    ]
    launcher = run_app(
        *flag,
        "experiment=vanishing",
        "hydra/launcher=my_cluster",
        "--cfg",
        "hydra",
        "--package",
        "hydra.launcher",
        env=env,
    )
    assert launcher.returncode == 0, launcher.stderr[-2000:]
    assert "slurm_partition: gpu-large" in launcher.stdout and "timeout_min: 240" in launcher.stdout
    assert "max_stack: 64" in launcher.stdout  # the rest from vgbench's stacked_slurm
