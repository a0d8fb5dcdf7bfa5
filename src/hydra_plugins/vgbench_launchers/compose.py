"""A sweep's job configs, composed once per family of siblings instead of once per job.

Hydra composes each job's config from the files, slowly: a 64-run sweep spends longer
composing than a stack of it spends training on a GPU. Jobs whose overrides differ only in the values of
keys inside the config (`model.depth=10`, `trainer.seed=1`: a dotted key, not a config group such as
`activation=relu`, which changes the defaults list) have configs that differ only in those values: Hydra
composes the defaults first and then sets each value override (OmegaConf.update). So one composed config
serves its siblings with the values set the same way. The sweeper (vgbench.yaml) validates a batch this
way and the stacked launcher groups it into stacks from the same configs.
"""

import contextlib
import functools
import gc
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict

from vgbench.config import task_part

SIBLINGS_LOOKED_AT = 8  # a sweep lists siblings next to each other: the last few composed jobs suffice


@functools.lru_cache(maxsize=2**16)
def parsed(line: str) -> Override:
    """One override as Hydra parses it, parsed once: a sweep's jobs repeat most of their overrides, and
    Hydra's grammar takes about a millisecond each."""
    return OverridesParser.create().parse_overrides([line])[0]


@dataclass(frozen=True)
class DirnameSettings:
    """hydra.job.config.override_dirname as plain values: read from a config once per family, not per job."""

    exclude_keys: frozenset[str]
    item_sep: str
    kv_sep: str

    @classmethod
    def of(cls, config: DictConfig) -> "DirnameSettings":
        settings = config.hydra.job.config.override_dirname
        return cls(frozenset(settings.exclude_keys), str(settings.item_sep), str(settings.kv_sep))

    def dirname(self, task_overrides: Sequence[Override]) -> str:
        """hydra.job.override_dirname, computed as Hydra computes it: the task overrides less the excluded
        keys, sorted, joined by item_sep, '=' replaced by kv_sep."""
        lines = sorted(o.input_line for o in task_overrides if o.key_or_group not in self.exclude_keys)
        return self.item_sep.join(lines).replace("=", self.kv_sep)


@dataclass
class Composed:
    config: DictConfig  # a job's whole config, its `hydra` node too
    task: DictConfig  # its task part (vgbench.config.task_part): what the run sees
    sweep_dir: str  # hydra.sweep.dir, resolved (an interpolation takes about half a millisecond to parse)


def changed_values(composed_overrides: Sequence[str], overrides: Sequence[str]) -> list[Override] | None:
    """The overrides whose values differ from a composed job's, where they differ only in the values of
    dotted keys; None for any other difference (a config group, a key added or deleted, a sweep)."""
    mine, theirs = [parsed(line) for line in overrides], [parsed(line) for line in composed_overrides]
    if [o.key_or_group for o in mine] != [o.key_or_group for o in theirs]:
        return None
    changed = [o for o, other in zip(mine, theirs, strict=True) if o.input_line != other.input_line]
    for override in changed:
        plain = override.type == OverrideType.CHANGE and override.package is None and not override.is_hydra_override()
        if not plain or "." not in override.key_or_group or override.is_sweep_override():
            return None
    return changed


def _copy_with(pickled: bytes, changed: Sequence[Override]) -> DictConfig:
    """A config from its pickle, with these values set as Hydra sets a value override."""
    config = pickle.loads(pickled)
    for override in changed:
        OmegaConf.update(config, override.key_or_group, override.value(), merge=True)
    return config


@dataclass
class Family:
    """A job Hydra composed, kept for its siblings: its overrides, and its config and task part pickled (a
    pickle loads as a deep copy with types and flags, 2.5x faster than deepcopy), with what its siblings
    share read once: the task overrides Hydra recorded, the override_dirname settings and the sweep folder
    (a sibling's Hydra overrides are its family's)."""

    overrides: Sequence[str]
    pickled: bytes
    pickled_task: bytes
    task_lines: list[str]  # hydra.overrides.task
    dirname: DirnameSettings
    sweep_dir: str

    @classmethod
    def of(cls, overrides: Sequence[str], config: DictConfig, task: DictConfig) -> "Family":
        return cls(
            overrides,
            pickle.dumps(config),
            pickle.dumps(task),
            list(config.hydra.overrides.task),
            DirnameSettings.of(config),
            str(config.hydra.sweep.dir),
        )

    def sibling(self, overrides: Sequence[str]) -> Composed | None:
        """The configs of a job whose overrides differ from this one's only in the values of dotted keys
        (`changed_values`): copies with the values set as Hydra sets a value override (OmegaConf.update,
        after composition), the config recording the job's own overrides. None for any other difference.
        tests/test_launchers.py checks it against Hydra's own composition. A value of the wrong type or a
        key that is not there raises, and Hydra then composes the job to say so its own way."""
        changed = changed_values(self.overrides, overrides)
        if changed is None:
            return None
        config = _copy_with(self.pickled, changed)
        mine = [parsed(line) for line in overrides if not parsed(line).is_hydra_override()]
        with open_dict(config.hydra):
            recorded = config.hydra.overrides.task  # the family's: set the lines that differ, in place
            for index, (override, line) in enumerate(zip(mine, self.task_lines, strict=True)):
                if override.input_line != line:
                    recorded[index] = override.input_line
            config.hydra.job.override_dirname = self.dirname.dirname(mine)
        return Composed(config, _copy_with(self.pickled_task, changed), self.sweep_dir)


def sibling_config(
    composed: DictConfig, composed_overrides: Sequence[str], overrides: Sequence[str]
) -> DictConfig | None:
    """`Family.sibling`'s config for a job beside an already composed one (None: not a sibling)."""
    job = Family.of(composed_overrides, composed, task_part(composed)).sibling(overrides)
    return job.config if job is not None else None


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while a sweep's job configs are built, and what lives at the end
    collected once and frozen (gc.freeze: later collections skip it). A config is a web of nodes with parent
    links; building a thousand of them would otherwise set off collections that each walk every config built
    so far, nearly half of a 1024-run plan's time. The configs live as long as the sweep anyway."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        if enabled:
            gc.enable()


def compose_configs(config_loader: ConfigLoader, master: DictConfig, batch: Sequence[Sequence[str]]) -> list[Composed]:
    """Each job's config and its task part: copied from a composed sibling where `Family.sibling` can (the
    task part from the sibling's own, a copy a fraction of the size of masking the whole config), else
    composed by Hydra, which also reports any error in Hydra's own words (a sibling that fails is composed
    again)."""
    with collector_paused():
        return _compose(config_loader, master, batch)


def _compose(config_loader: ConfigLoader, master: DictConfig, batch: Sequence[Sequence[str]]) -> list[Composed]:
    families: list[Family] = []
    jobs = []
    for overrides in batch:
        job = None
        for family in reversed(families[-SIBLINGS_LOOKED_AT:]):
            try:
                job = family.sibling(overrides)
            except Exception:  # Hydra's composition below raises the error its own way
                job = None
                break
            if job is not None:
                break
        if job is None:
            config = config_loader.load_sweep_config(master, list(overrides))
            task = task_part(config)
            families.append(Family.of(overrides, config, task))
            job = Composed(config, task, families[-1].sweep_dir)
        jobs.append(job)
    return jobs
