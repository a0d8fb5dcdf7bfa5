"""A sweep's job configs, composed once per family of siblings instead of once per job.

Hydra composes each job's config from the files, slowly: a 64-run sweep spends longer
composing than a stack of it spends training on a GPU. Jobs whose overrides differ only in the values of
keys inside the config (`model.depth=10`, `trainer.seed=1`: a dotted key, not a config group such as
`activation=relu`, which changes the defaults list) have configs that differ only in those values: Hydra
composes the defaults first and then sets each value override (OmegaConf.update). So one composed config
serves its siblings with the values set the same way. The sweeper (vgbench.yaml) validates a batch this
way and the stacked launcher groups it into stacks from the same configs.
"""

import functools
import pickle
from collections.abc import Sequence

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict

SIBLINGS_LOOKED_AT = 8  # a sweep lists siblings next to each other: the last few composed jobs suffice


@functools.lru_cache(maxsize=2**16)
def parsed(line: str) -> Override:
    """One override as Hydra parses it, parsed once: a sweep's jobs repeat most of their overrides, and
    Hydra's grammar takes about a millisecond each."""
    return OverridesParser.create().parse_overrides([line])[0]


def _dirname(task_overrides: Sequence[Override], settings: DictConfig) -> str:
    """hydra.job.override_dirname, computed as Hydra computes it: the task overrides less the excluded
    keys, sorted, joined by item_sep, '=' replaced by kv_sep."""
    lines = sorted(o.input_line for o in task_overrides if o.key_or_group not in settings.exclude_keys)
    return settings.item_sep.join(lines).replace("=", settings.kv_sep)


def sibling_config(
    composed: DictConfig, composed_overrides: Sequence[str], overrides: Sequence[str], pickled: bytes | None = None
) -> DictConfig | None:
    """The config of a job whose overrides differ from an already composed job's only in the values of
    dotted keys: a copy of that config with the values set as Hydra sets a value override
    (OmegaConf.update, after composition). None for any other difference (a config group, a key added or
    deleted, a sweep). tests/test_launchers.py checks it against Hydra's own composition. A value of the
    wrong type or a key that is not there raises, and Hydra then composes the job to say so its own way.
    `pickled`: `composed` as pickle.dumps made it, where the caller keeps it for many siblings."""
    mine, theirs = [parsed(line) for line in overrides], [parsed(line) for line in composed_overrides]
    if [o.key_or_group for o in mine] != [o.key_or_group for o in theirs]:
        return None
    changed = [o for o, other in zip(mine, theirs, strict=True) if o.input_line != other.input_line]
    for override in changed:
        plain = override.type == OverrideType.CHANGE and override.package is None and not override.is_hydra_override()
        if not plain or "." not in override.key_or_group or override.is_sweep_override():
            return None
    config = pickle.loads(pickled or pickle.dumps(composed))  # a deep copy with types and flags: 2.5x deepcopy
    for override in changed:
        OmegaConf.update(config, override.key_or_group, override.value(), merge=True)
    with open_dict(config.hydra):
        config.hydra.overrides.task = [o.input_line for o in mine if not o.is_hydra_override()]
        config.hydra.job.override_dirname = _dirname(
            [o for o in mine if not o.is_hydra_override()], config.hydra.job.config.override_dirname
        )
    return config


def compose_configs(
    config_loader: ConfigLoader, master: DictConfig, batch: Sequence[Sequence[str]]
) -> list[DictConfig]:
    """Each job's config: copied from a composed sibling where `sibling_config` can, else composed by
    Hydra, which also reports any error in Hydra's own words (a sibling that fails is composed again)."""
    composed: list[tuple[Sequence[str], DictConfig, bytes]] = []  # (overrides, config, pickled) composed by Hydra
    configs = []
    for overrides in batch:
        config = None
        for other_overrides, other, pickled in reversed(composed[-SIBLINGS_LOOKED_AT:]):
            try:
                config = sibling_config(other, other_overrides, overrides, pickled)
            except Exception:  # Hydra's composition below raises the error its own way
                config = None
                break
            if config is not None:
                break
        if config is None:
            config = config_loader.load_sweep_config(master, list(overrides))
            composed.append((overrides, config, pickle.dumps(config)))
        configs.append(config)
    return configs
