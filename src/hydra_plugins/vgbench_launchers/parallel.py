"""`hydra/launcher=parallel`: Hydra's joblib launcher, one local process per job, with vgbench's placement.

It runs as many jobs at once as there are cores (joblib's n_jobs), but on a GPU host with a CUDA device
at most `jobs_per_gpu` per GPU: each process holds its own CUDA context and its own copy of the data.
It writes the effective n_jobs into the config the jobs see, so each job takes cores / n_jobs torch
threads and, with several GPUs, GPU (job number mod GPUs) (vgbench.placement).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import open_dict, read_write

from vgbench.placement import jobs_at_once


@dataclass
class ParallelLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.vgbench_launchers.parallel.ParallelLauncher"
    jobs_per_gpu: int = 4  # processes at once per GPU when the runs use CUDA


ConfigStore.instance().store(
    group="hydra/launcher", name="vgbench_parallel", node=ParallelLauncherConf, provider="vgbench"
)


class ParallelLauncher(JoblibLauncher):
    def __init__(self, jobs_per_gpu: int = 4, **joblib: Any) -> None:
        super().__init__(**joblib)
        self.jobs_per_gpu = jobs_per_gpu

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        parallel = jobs_at_once(int(self.joblib.get("n_jobs", -1)), str(self.config.trainer.device), self.jobs_per_gpu)
        self.joblib["n_jobs"] = parallel
        # what the jobs read to share out the cores: each job's config is composed afresh from the files
        # and these overrides, so the effective value goes in as an override
        with read_write(self.config.hydra.overrides), open_dict(self.config.hydra.overrides):
            self.config.hydra.overrides.hydra.append(f"hydra.launcher.n_jobs={parallel}")
        return super().launch(job_overrides, initial_job_idx)
