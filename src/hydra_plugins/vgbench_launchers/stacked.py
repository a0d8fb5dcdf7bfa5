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

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from vgbench.config import stack_key
from vgbench.placement import available_cores, local_parallel_jobs, visible_gpus

log = logging.getLogger("vgbench.launcher")  # not under hydra_plugins: its one line stays in a quiet sweep

EXECUTORS = ("local", "submitit_local", "slurm")


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.vgbench_launchers.stacked.StackedLauncher"
    max_stack: int = 64  # runs in one stack at most
    n_jobs: int = -1  # local: stacks trained at once (-1: one per core), at most jobs_per_gpu per GPU
    jobs_per_gpu: int = 4
    executor: str = "local"  # local, submitit_local or slurm
    # submitit's parameters for a stack's task: timeout_min, cpus_per_task, gpus_per_node, mem_gb,
    # partition, account, array_parallelism, max_num_timeout, ... (see conf/hydra/launcher/stacked_slurm.yaml)
    submitit: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/launcher", name="vgbench_stacked", node=StackedLauncherConf,
                             provider="vgbench")  # fmt: skip


@dataclass
class Job:
    index: int  # the job's number in the sweep
    overrides: list[str]


def group_into_stacks(keys: Sequence[str], max_stack: int) -> list[list[int]]:
    """Job indices grouped by stack key, in order of first appearance, at most `max_stack` each."""
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return [members[i : i + max_stack] for members in groups.values() for i in range(0, len(members), max_stack)]


def _save_config(config: Any, name: str, folder: Path) -> None:  # noqa: ANN401
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, folder / name)


def _prepare(hydra_context: HydraContext, config: DictConfig, job: Job) -> tuple[DictConfig, DictConfig, Path]:
    """A job's config (with its hydra node), its task config and output folder; writes the .hydra/
    record, as Hydra's run_job does."""
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(job.overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{job.index}"
        sweep_config.hydra.job.num = job.index
    HydraConfig.instance().set_config(sweep_config)
    output_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
        sweep_config.hydra.runtime.output_dir = str(output_dir.absolute())
    HydraConfig.instance().set_config(sweep_config)
    task_cfg = copy.deepcopy(sweep_config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    output_dir.mkdir(parents=True, exist_ok=True)
    if sweep_config.hydra.output_subdir is not None:
        record = output_dir / str(sweep_config.hydra.output_subdir)
        _save_config(task_cfg, "config.yaml", record)
        _save_config(copy.deepcopy(HydraConfig.instance().cfg), "hydra.yaml", record)
        _save_config(sweep_config.hydra.overrides.task, "overrides.yaml", record)
    return sweep_config, task_cfg, output_dir


class StackTask:
    """One stack, run in its own process (a joblib worker or a submitit task)."""

    def __init__(self, hydra_context: HydraContext, config: DictConfig, task_function: TaskFunction) -> None:
        self.hydra_context, self.config, self.task_function = hydra_context, config, task_function

    def __call__(self, jobs: list[Job], singleton_state: dict[Any, Any], threads: int | None,
                 gpu_slot: int | None) -> list[JobReturn]:  # fmt: skip
        from vgbench.app import console_level, train_jobs  # in the stack's process: torch loads here
        from vgbench.train import Placement

        setup_globals()
        Singleton.set_state(singleton_state)
        prepared = [_prepare(self.hydra_context, self.config, job) for job in jobs]
        first = prepared[0][0]
        configure_log(first.hydra.job_logging, first.hydra.verbose)
        handlers = []
        for _, _, output_dir in prepared[1:]:  # every run's train.log gets the stack's log
            handler = logging.FileHandler(output_dir / f"{first.hydra.job.name}.log")
            handler.setFormatter(logging.getLogger().handlers[-1].formatter)
            logging.getLogger().addHandler(handler)
            handlers.append(handler)
        callbacks = self.hydra_context.callbacks
        for sweep_config, _, _ in prepared:
            callbacks.on_job_start(config=sweep_config, task_function=self.task_function)
        progress = console_level(first.hydra.mode, first.hydra.verbose) == "INFO"
        results = train_jobs([task for _, task, _ in prepared], [out for _, _, out in prepared],
                             Placement(threads=threads, gpu_slot=gpu_slot, progress=progress))  # fmt: skip
        returns = []
        for (sweep_config, task_cfg, _), result in zip(prepared, results, strict=True):
            hydra_cfg = OmegaConf.create({"hydra": copy.deepcopy(sweep_config.hydra)})
            ret = JobReturn(overrides=list(sweep_config.hydra.overrides.task), cfg=task_cfg,
                            hydra_cfg=hydra_cfg, working_dir=os.getcwd(),
                            task_name=str(sweep_config.hydra.job.name), status=JobStatus.COMPLETED)  # fmt: skip
            ret.return_value = result
            callbacks.on_job_end(config=sweep_config, job_return=ret)
            returns.append(ret)
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
        return returns

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        """submitit: a preempted or timed-out stack is resubmitted as it was, and resumes its runs'
        checkpoints (the presets set trainer.resume=true)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class StackedLauncher(Launcher):
    def __init__(self, max_stack: int = 64, n_jobs: int = -1, jobs_per_gpu: int = 4, executor: str = "local",
                 submitit: dict[str, Any] | None = None) -> None:  # fmt: skip
        if executor not in EXECUTORS:
            raise ValueError(
                f"hydra.launcher.executor={executor!r} is not valid; choose one of: {', '.join(EXECUTORS)}"
            )
        if max_stack < 1:
            raise ValueError(f"hydra.launcher.max_stack={max_stack!r} is not valid; it must be >= 1")
        self.max_stack, self.n_jobs, self.jobs_per_gpu, self.executor = max_stack, n_jobs, jobs_per_gpu, executor
        self.submitit = OmegaConf.to_container(submitit, resolve=True) if OmegaConf.is_config(submitit) else dict(
            submitit or {})  # fmt: skip
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
        jobs = [Job(initial_job_idx + i, list(overrides)) for i, overrides in enumerate(job_overrides)]
        keys = []
        for job in jobs:  # compose each job's config in this process (no torch) to find what can stack
            task_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, job.overrides)
            with read_write(task_cfg), open_dict(task_cfg):
                del task_cfg["hydra"]
            keys.append(stack_key(task_cfg))
        stacks = [[jobs[i] for i in members] for members in group_into_stacks(keys, self.max_stack)]
        task = StackTask(self.hydra_context, self.config, self.task_function)
        state = Singleton.get_state()
        if self.executor == "local":
            results = self._run_local(task, stacks, state)
        else:
            results = self._run_submitit(task, stacks, state, sweep_dir)
        by_job = {ret.hydra_cfg.hydra.job.num: ret for stack_returns in results for ret in stack_returns}
        return [by_job[job.index] for job in jobs]

    def _run_local(self, task: StackTask, stacks: list[list[Job]], state: dict[Any, Any]) -> list[list[JobReturn]]:
        from joblib import Parallel, delayed

        cores = available_cores()
        parallel = min(len(stacks), local_parallel_jobs(self.n_jobs, cores, str(self.config.trainer.device),
                                                        visible_gpus(), self.jobs_per_gpu))  # fmt: skip
        threads = max(1, cores // parallel)
        with open_dict(self.config):
            self.config.hydra.launcher.n_jobs = parallel  # recorded in each run's .hydra/hydra.yaml
        log.warning("stacked launcher: %d runs in %d stack(s) of up to %d, %d at a time, %d torch thread(s) each",
                    sum(map(len, stacks)), len(stacks), self.max_stack, parallel, threads)  # fmt: skip
        if parallel == 1:
            return [task(stack, state, threads, 0) for stack in stacks]
        return Parallel(n_jobs=parallel, backend="loky")(
            delayed(task)(stack, state, threads, slot) for slot, stack in enumerate(stacks)
        )

    def _run_submitit(self, task: StackTask, stacks: list[list[Job]], state: dict[Any, Any],
                      sweep_dir: Path) -> list[list[JobReturn]]:  # fmt: skip
        import submitit

        params = dict(self.submitit)
        folder = params.pop("submitit_folder", str(sweep_dir / ".submitit" / "%j"))
        cluster = "local" if self.executor == "submitit_local" else "slurm"
        retries = {f"{cluster}_max_num_timeout": params.pop("max_num_timeout", 3)}
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **retries)
        executor.update_parameters(**params)
        threads = int(params.get("cpus_per_task") or 1)
        log.warning("stacked launcher: %d runs in %d stack(s) of up to %d, one %s task each",
                    sum(map(len, stacks)), len(stacks), self.max_stack, cluster)  # fmt: skip
        submitted = executor.map_array(task, stacks, [state] * len(stacks), [threads] * len(stacks),
                                       [None] * len(stacks))  # fmt: skip
        return [job.results()[0] for job in submitted]
