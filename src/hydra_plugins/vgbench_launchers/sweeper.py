"""`hydra/sweeper=vgbench` (vgbench's default): Hydra's basic sweeper, validating each batch the fast way.

Before launching a batch, Hydra's basic sweeper composes every job's config to catch a bad override
early, a cost paid again by the launcher that composes each job to run it. This one
composes each family of siblings once (vgbench_launchers.compose) and hands the configs to the stacked
launcher, which then composes nothing. Sweeping, `hydra.sweeper.params` and `max_batch_size` are the basic
sweeper's; another sweeper (Optuna, Nevergrad, ...) is chosen as usual with `hydra/sweeper=...`.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore

from hydra_plugins.vgbench_launchers.compose import compose_configs
from hydra_plugins.vgbench_launchers.stacked import StackedLauncher


@dataclass
class VgbenchSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.vgbench_launchers.sweeper.VgbenchSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="vgbench", node=VgbenchSweeperConf, provider="vgbench")


class VgbenchSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        assert self.hydra_context is not None and self.config is not None
        configs = compose_configs(self.hydra_context.config_loader, self.config, batch)
        if isinstance(self.launcher, StackedLauncher):
            self.launcher.composed = {
                tuple(overrides): config for overrides, config in zip(batch, configs, strict=True)
            }
