"""`hydra/sweeper=vgbench` (vgbench's default): Hydra's basic sweeper, validating each batch the fast way,
with a dry run.

Before launching a batch, Hydra's basic sweeper composes every job's config to catch a bad override
early, a cost paid again by the launcher that composes each job to run it. This one
composes each family of siblings once (vgbench_launchers.compose) and hands the configs to the stacked
launcher, which then composes nothing. Sweeping, `hydra.sweeper.params` and `max_batch_size` are the basic
sweeper's; another sweeper (Optuna, Nevergrad, ...) is chosen as usual with `hydra/sweeper=...`.

`hydra.sweeper.dry_run=true` composes and validates every job as a sweep would, prints the plan (for the
stacked launcher: the stacks, each one's shape and planned memory, and where they would run; for another
launcher: the jobs) and stops there: nothing is trained and nothing is written, not even the sweep folder.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser

from hydra_plugins.vgbench_launchers.compose import compose_configs
from hydra_plugins.vgbench_launchers.stacked import StackedLauncher


@dataclass
class VgbenchSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.vgbench_launchers.sweeper.VgbenchSweeper"
    dry_run: bool = False  # print the sweep's plan and train nothing


ConfigStore.instance().store(group="hydra/sweeper", name="vgbench", node=VgbenchSweeperConf, provider="vgbench")


class VgbenchSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None, params: dict[str, str] | None = None, dry_run: bool = False) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.dry_run = dry_run

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        assert self.hydra_context is not None and self.config is not None
        configs = compose_configs(self.hydra_context.config_loader, self.config, batch)
        if isinstance(self.launcher, StackedLauncher):
            self.launcher.composed = {
                tuple(overrides): composed for overrides, composed in zip(batch, configs, strict=True)
            }

    def sweep(self, arguments: list[str]) -> Any:
        if not self.dry_run:
            return super().sweep(arguments)
        assert self.hydra_context is not None and self.config is not None
        # the jobs as the basic sweeper enumerates them, all in one batch
        params = [*self._parse_config(), *arguments]
        overrides = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(params)
        jobs = [job for batch in self.split_arguments(overrides, None) for job in batch]
        self.validate_batch_is_legal(jobs)  # a bad override fails here, as it would in the sweep
        if isinstance(self.launcher, StackedLauncher):
            lines = self.launcher.plan(jobs)
        else:
            launcher = self.config.hydra.launcher.get("_target_", "the launcher")
            lines = [f"dry run: {len(jobs)} job(s), one process each ({launcher})", *(",".join(j) for j in jobs)]
        print("\n".join(lines), flush=True)
        return []
