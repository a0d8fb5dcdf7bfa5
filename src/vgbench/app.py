"""The command line: Hydra composes the config, the trainer (`vgbench.train`) runs it.

    vgbench-train activation=sigmoid model.depth=10
    python -m vgbench.train activation=sigmoid model.depth=10          # the same app
    vgbench-train -m experiment=vanishing hydra/launcher=parallel      # a sweep

This module imports no torch on purpose. In a sweep the launcher process only composes configs and
hands jobs to joblib, submitit or Ray; the trainer, and torch with it (about 2.5 s here), load inside
each job. So the launcher's own start-up, `--cfg job` and `--help` take a fraction of a second, and
a parallel sweep does not pay that import once more before its jobs start.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vgbench.config import CONF_DIR, register_configs

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from vgbench.train import run_job  # in the job's process: see the module docstring

    return run_job(cfg)


if __name__ == "__main__":
    main()
