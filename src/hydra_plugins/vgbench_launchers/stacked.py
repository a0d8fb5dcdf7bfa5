"""`hydra/launcher=stacked`: a sweep's runs grouped into stacks, each stack trained as one vectorised model.

Runs whose configs differ only in the per-run keys (seed, learning rate and the other optimizer
scalars, init scheme and scale: vgbench.config.PER_RUN_KEYS) perform the same sequence of operations,
so up to `max_stack` of them train together in one process (vgbench.train). Any override a stack cannot
share makes more stacks; nothing is refused. Stacks run on the local cores (`executor: local`, as the
parallel launcher does, `n_jobs` stacks at once sharing out the cores), or one task per stack through
submitit (`executor: submitit_local` to try it here, `slurm` on a cluster, with `submitit` parameters).

Every run stays a run: its own folder with .hydra/, summary.json, checkpoint, series and TensorBoard
events, as when it runs alone; Hydra's callbacks see one job per run.
"""

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf._utils import get_omega_conf_dumper  # the representers OmegaConf.save writes with

from hydra_plugins.vgbench_launchers.compose import Composed, compose_configs
from vgbench.config import group_into_stacks, stack_key
from vgbench.errors import at_least, choice, fraction
from vgbench.placement import Placement, available_cores, jobs_per_device, local_parallel_jobs, visible_gpus

log = logging.getLogger("vgbench.launcher")  # not under hydra_plugins: its one line stays in a quiet sweep

EXECUTORS = ("local", "submitit_local", "slurm")


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.vgbench_launchers.stacked.StackedLauncher"
    max_stack: int = 64  # runs in one stack at most
    n_jobs: int = -1  # local: stacks trained at once (-1: one per core), at most jobs_per_gpu per GPU
    jobs_per_gpu: int = 4
    # the share of a device's free memory the stacks running on it at once may plan for (vgbench.memory): a
    # stack that would need more trains as smaller ones, one after another
    memory_fraction: float = 0.8
    executor: str = "local"  # local, submitit_local or slurm
    # submitit's parameters for a stack's task: timeout_min, cpus_per_task, gpus_per_node, mem_gb,
    # partition, account, array_parallelism, max_num_timeout, ... (see conf/hydra/launcher/stacked_slurm.yaml)
    submitit: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/launcher", name="vgbench_stacked", node=StackedLauncherConf, provider="vgbench"
)


@dataclass
class Job:
    index: int  # the job's number in the sweep
    overrides: list[str]
    config: DictConfig  # composed once, in the launcher process
    task: DictConfig  # its task part (vgbench.config.task_part): what the run sees
    sweep_dir: str  # hydra.sweep.dir, resolved


class _RecordDumper(getattr(yaml, "CDumper", yaml.Dumper)):
    """OmegaConf.save's YAML through libyaml's C emitter where PyYAML has it: OmegaConf's representers, so
    the same text (tests/test_launchers.py), written 2.5 to 3 times faster. A stack writes three records for
    each of its runs, up to 64 in a row before its first step."""


_RecordDumper.add_representer(str, get_omega_conf_dumper().str_representer)


def record_yaml(container: Any) -> str:  # a config as plain containers
    """What OmegaConf.to_yaml writes for the config `container` came from (OmegaConf.to_container)."""
    return yaml.dump(container, Dumper=_RecordDumper, default_flow_style=False, allow_unicode=True, sort_keys=False)


def _prepare(job: Job) -> tuple[DictConfig, DictConfig, Path]:
    """A job's config, its task part and its output folder; writes the .hydra/ record (config.yaml,
    hydra.yaml, overrides.yaml) as Hydra's run_job does, from one conversion of the config to containers
    rather than a deep copy of each part (deep-copying a full config is slow, and a sweep has many)."""
    config = job.config
    output_dir = Path(job.sweep_dir) / str(config.hydra.sweep.subdir)
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.job.id = f"{config.hydra.job.name}_{job.index}"
        config.hydra.job.num = job.index
        config.hydra.runtime.output_dir = str(output_dir.absolute())
    task_cfg = job.task  # the task part, untouched by the hydra node's settings above
    output_dir.mkdir(parents=True, exist_ok=True)
    record_folder = config.hydra.output_subdir  # an interpolation (vgbench.app.record_folder): read it once
    if record_folder is not None:
        folder = output_dir / str(record_folder)
        folder.mkdir(parents=True, exist_ok=True)
        task = OmegaConf.to_container(config, enum_to_str=True)
        hydra = {"hydra": task.pop("hydra")}
        for name, record in (
            ("config.yaml", task),
            ("hydra.yaml", hydra),
            ("overrides.yaml", hydra["hydra"]["overrides"]["task"]),
        ):
            (folder / name).write_text(record_yaml(record), encoding="utf-8")
    return config, task_cfg, output_dir


class StackTask:
    """One stack, run in its own process (a joblib worker or a submitit task)."""

    def __init__(self, hydra_context: HydraContext, config: DictConfig, task_function: TaskFunction) -> None:
        self.hydra_context, self.config, self.task_function = hydra_context, config, task_function

    def __call__(
        self,
        jobs: list[Job],
        singleton_state: dict[Any, Any],
        threads: int | None,
        gpu_slot: int | None,
        memory_share: float,
    ) -> list[JobReturn]:
        from vgbench.app import console_level, refused
        from vgbench.jobs import train_jobs  # in the stack's process: torch loads when it trains
        from vgbench.run_logs import OwnLinesOnly, RunLogFiles

        setup_globals()
        Singleton.set_state(singleton_state)
        prepared = [_prepare(job) for job in jobs]
        first = prepared[0][0]
        HydraConfig.instance().set_config(first)  # for whatever reads it while the stack trains
        configure_log(first.hydra.job_logging, first.hydra.verbose)
        root = logging.getLogger()
        for handler in root.handlers:  # the first run's train.log, as Hydra's job logging opened it
            if isinstance(handler, logging.FileHandler):
                handler.addFilter(OwnLinesOnly(prepared[0][2]))
        others = RunLogFiles(  # every other run's train.log; a folder that holds another run gets nothing
            [output_dir for config, _, output_dir in prepared[1:] if not refused(config)],
            str(first.hydra.job.name),
            root.handlers[-1].formatter if root.handlers else None,
        )
        root.addHandler(others)
        callbacks = self.hydra_context.callbacks
        for sweep_config, *_ in prepared:
            callbacks.on_job_start(config=sweep_config, task_function=self.task_function)
        progress = console_level(first.hydra.mode, first.hydra.verbose) == "INFO"
        results = train_jobs(
            [task for _, task, _ in prepared],
            [out for *_, out in prepared],
            Placement(threads=threads, gpu_slot=gpu_slot, progress=progress, memory_share=memory_share),
        )
        returns = []
        for (sweep_config, task_cfg, _), result in zip(prepared, results, strict=True):
            # hydra_cfg: the job's whole config, whose `hydra` node is the job's own (a copy of it alone
            # would be a second deep copy per run)
            ret = JobReturn(
                overrides=list(sweep_config.hydra.overrides.task),
                cfg=task_cfg,
                hydra_cfg=sweep_config,
                working_dir=os.getcwd(),
                task_name=str(sweep_config.hydra.job.name),
                status=JobStatus.COMPLETED,
            )
            ret.return_value = result
            callbacks.on_job_end(config=sweep_config, job_return=ret)
            returns.append(ret)
        root.removeHandler(others)
        others.close()
        return returns

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit: a preempted or timed-out stack is resubmitted as it was, and resumes its runs'
        checkpoints (the presets set trainer.resume=true)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class StackedLauncher(Launcher):
    def __init__(
        self,
        max_stack: int = 64,
        n_jobs: int = -1,
        jobs_per_gpu: int = 4,
        memory_fraction: float = 0.8,
        executor: str = "local",
        submitit: dict[str, Any] | None = None,
    ) -> None:
        choice("hydra.launcher.executor", executor, EXECUTORS)
        at_least("hydra.launcher.max_stack", max_stack, 1)
        fraction("hydra.launcher.memory_fraction", memory_fraction, "(0, 1]")
        self.max_stack, self.n_jobs, self.jobs_per_gpu, self.executor = max_stack, n_jobs, jobs_per_gpu, executor
        self.memory_fraction = memory_fraction
        self.submitit = (
            OmegaConf.to_container(submitit, resolve=True) if OmegaConf.is_config(submitit) else dict(submitit or {})
        )
        self.composed: dict[tuple[str, ...], Composed] = {}  # job overrides -> configs, from the sweeper
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # in this process (no torch), to find what stacks: the configs the sweeper composed to validate the
        # batch (hydra/sweeper=vgbench), else composed here
        stacks = self.stacks(job_overrides, initial_job_idx)
        task = StackTask(self.hydra_context, self.config, self.task_function)
        state = Singleton.get_state()
        if self.executor == "local":
            results = self._run_local(task, stacks, state)
        else:
            results = self._run_submitit(task, stacks, state, sweep_dir)
        by_job = {ret.hydra_cfg.hydra.job.num: ret for stack_returns in results for ret in stack_returns}
        return [by_job[initial_job_idx + i] for i in range(len(job_overrides))]

    def stacks(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int = 0) -> list[list[Job]]:
        """The jobs grouped into the stacks they train in, from the configs the sweeper composed to
        validate the batch (hydra/sweeper=vgbench), else composed here (in this process: no torch)."""
        configs = self.stacks_configs(job_overrides)
        self.composed = {}
        jobs = [
            Job(initial_job_idx + i, list(overrides), composed.config, composed.task, composed.sweep_dir)
            for i, (overrides, composed) in enumerate(zip(job_overrides, configs, strict=True))
        ]
        keys = [stack_key(job.task) for job in jobs]
        return [[jobs[i] for i in members] for members in group_into_stacks(keys, self.max_stack)]

    def stacks_configs(self, job_overrides: Sequence[Sequence[str]]) -> list[Composed]:
        """The jobs' configs: the sweeper's (hydra/sweeper=vgbench), else composed here."""
        assert self.config is not None and self.hydra_context is not None
        configs = [self.composed.get(tuple(overrides)) for overrides in job_overrides]
        if None in configs:
            configs = compose_configs(self.hydra_context.config_loader, self.config, job_overrides)
        return configs

    def local_placement(self, stacks: int) -> tuple[str, int, int, float]:
        """(device, stacks at once, torch threads each, each one's share of its device's free memory)."""
        assert self.config is not None
        device = str(self.config.trainer.device)
        gpus, cores = (visible_gpus() if device != "cpu" else 0), available_cores()
        parallel = min(stacks, local_parallel_jobs(self.n_jobs, cores, device, gpus, self.jobs_per_gpu))
        share = self.memory_fraction / jobs_per_device(parallel, device, gpus)
        if device == "auto":  # as vgbench.runtime resolves it, MPS aside
            device = "cuda" if gpus else "cpu"
        return device, parallel, max(1, cores // parallel), share

    def plan(self, job_overrides: Sequence[Sequence[str]]) -> list[str]:
        """What `launch` would do, as lines to print: the stacks, each one's runs, shape and planned memory,
        and where they would run. Trains nothing and writes nothing (hydra.sweeper.dry_run=true)."""
        from vgbench.config import hidden_widths
        from vgbench.data import feature_shape
        from vgbench.errors import UserError
        from vgbench.memory import run_bytes, size_text
        from vgbench.validate import validate

        stacks, failing, bad = self.stacks(job_overrides), [], set()
        for job in (job for stack in stacks for job in stack):  # what each run checks before its data loads
            try:
                validate(job.task)
            except UserError as error:  # a run that would fail alone
                failing.append(f"  {','.join(job.overrides)}: {error}")
                bad.add(job.index)
        stacks = [kept for stack in stacks if (kept := [job for job in stack if job.index not in bad])]
        runs = sum(map(len, stacks))
        if self.executor == "local":
            device, parallel, threads, share = self.local_placement(len(stacks))
            where = (
                f"on this machine's {device}, {parallel} stack(s) at a time with {threads} torch thread(s) each; "
                f"each may plan for {share:.0%} of its device's free memory (split further if it does not fit)"
            )
        else:
            where = f"one {self.executor} task per stack ({', '.join(f'{k}={v}' for k, v in self.submitit.items())})"
        lines = [f"dry run: {runs} run(s) in {len(stacks)} stack(s) of up to {self.max_stack}, {where}"]
        if failing:
            lines += [f"{len(failing)} run(s) would fail, each alone, beside them:", *failing]
        for number, stack in enumerate(stacks, 1):
            cfg = stack[0].task
            widths = hidden_widths(cfg.model)
            shape = f"{len(widths)}x{widths[0] if len(set(widths)) == 1 else widths} {cfg.activation.name}"
            each = max(run_bytes(job.task, *feature_shape(cfg.data)) for job in stack)
            lines.append(
                f"stack {number}: {len(stack)} run(s) of a {shape} MLP at batch {cfg.data.batch_size}, about "
                f"{size_text(each)} per run, {size_text(each * len(stack))} in all"
            )
            lines += [f"  {','.join(job.overrides)}" for job in stack]
        return lines

    def _run_local(self, task: StackTask, stacks: list[list[Job]], state: dict[Any, Any]) -> list[list[JobReturn]]:
        from joblib import Parallel, delayed

        device, parallel, threads, share = self.local_placement(len(stacks))
        for job in (job for stack in stacks for job in stack):  # recorded in each run's .hydra/hydra.yaml
            with read_write(job.config.hydra), open_dict(job.config.hydra):
                job.config.hydra.launcher.n_jobs = parallel
        log.warning(
            "stacked launcher: %d runs in %d stack(s) of up to %d, %d at a time, %d torch thread(s) each",
            sum(map(len, stacks)),
            len(stacks),
            self.max_stack,
            parallel,
            threads,
        )
        if parallel == 1:
            return [task(stack, state, threads, 0, share) for stack in stacks]
        return Parallel(n_jobs=parallel, backend="loky")(
            delayed(task)(stack, state, threads, slot, share) for slot, stack in enumerate(stacks)
        )

    def _run_submitit(
        self, task: StackTask, stacks: list[list[Job]], state: dict[Any, Any], sweep_dir: Path
    ) -> list[list[JobReturn]]:
        import submitit

        params = dict(self.submitit)
        folder = params.pop("submitit_folder", str(sweep_dir / ".submitit" / "%j"))
        cluster = "local" if self.executor == "submitit_local" else "slurm"
        retries = {f"{cluster}_max_num_timeout": params.pop("max_num_timeout", 3)}
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **retries)
        executor.update_parameters(**params)
        threads = int(params.get("cpus_per_task") or 1)
        log.warning(
            "stacked launcher: %d runs in %d stack(s) of up to %d, one %s task each",
            sum(map(len, stacks)),
            len(stacks),
            self.max_stack,
            cluster,
        )
        # a SLURM task has its own allocation; submitit's local tasks all run at once on this machine
        share = self.memory_fraction / (len(stacks) if cluster == "local" else 1)
        submitted = executor.map_array(
            task, stacks, [state] * len(stacks), [threads] * len(stacks), [None] * len(stacks), [share] * len(stacks)
        )
        return [job.results()[0] for job in submitted]
