"""Structured configs: every knob of vgbench, its type and its default, in one place.

The dataclasses below are the single home of every default. The YAML files under `conf/` name the
option a group offers (`optimizer/adam.yaml` sets `name: adam` and Adam's own learning rate) and never
repeat a default (tests/test_config.py keeps it so). Hydra rejects a wrong type or an unknown key at
start-up (`command_line_error` says so in one line); `vgbench.validate` checks what a type cannot express
(which activation, which init) against the registries next to the code that implements them.

This module imports no torch and nothing of vgbench but its errors: the launcher process of a sweep reads
it to compose and group jobs, and every registry reads its helpers.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from vgbench.errors import ConfigError

# The config files: conf/ at the top of the repository, shipped in the wheel as the package vgbench.conf
# (pyproject.toml maps one onto the other), so a checkout and an installed vgbench read the same files.
CONF_PACKAGE = "vgbench.conf"
CONF_DIR = Path(str(resources.files(CONF_PACKAGE)))
USER_CONF_ENV = "VGBENCH_CONFIG_DIR"  # a folder of the user's own configs, searched after vgbench's


@dataclass
class ActivationConfig:
    name: str = MISSING
    # Parameters of the function (leaky slope, ELU alpha, ...); each activation file lists its own.
    params: dict[str, float] = field(default_factory=dict)
    target: str | None = None  # activation=custom: your own elementwise function, as module.function


# The knobs that act only under another key's values (the report leaves them out of a sweep's overview
# where they do not act: init_std beside init=auto says nothing about the runs)
ACTS_ONLY_WITH = {
    "model.init_std": ("model.init", ("normal",)),
    "model.sigma_w2": ("model.init", ("gaussian", "orthogonal")),
    "model.bias_std": ("model.bias_init", ("normal",)),
}


@dataclass
class ModelConfig:
    depth: int = 3  # hidden layers
    width: Any = 256  # one int for every hidden layer, or a list with one width per hidden layer
    # auto: Kaiming for ReLU-like units, Xavier for the rest (LeCun for SELU); see vgbench.model.WEIGHT_INITS
    init: str = "auto"
    init_std: float = 0.01  # for init=normal: the weights' own std
    sigma_w2: float = 1.0  # for init=gaussian (N(0, sigma_w2 / fan_in)) and init=orthogonal (gain^2): the theory's
    bias_init: str = "auto"  # auto: PyTorch's draw with init=pytorch_default (as nn.Linear does), else zeros
    bias_std: float = 0.01  # for bias_init=normal
    norm: str = "none"  # none, batchnorm, layernorm: applied to W h + b, before the activation
    residual: bool = False  # h_l = h_{l-1} + f(...) wherever the widths match
    dropout: float = 0.0


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd, momentum and rmsprop
    nesterov: bool = False  # momentum
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam
    alpha: float = 0.99  # rmsprop smoothing constant
    eps: float = 1e-8  # adam and rmsprop


@dataclass
class DataConfig:
    name: str = MISSING
    # Folder of the IDX files (torchvision's MNIST/raw layout), provisioned on first use
    root: str = "${oc.env:VGBENCH_DATA,'~/.cache/vgbench/data'}"
    batch_size: int = 64
    eval_batch_size: int = 1000
    # Examples held out of the training split for per-epoch validation: an int (0 evaluates on the test
    # split), or auto: a tenth of the training examples, at most 5000 (MNIST's 60k: 5000; 2048: 204)
    val_size: Any = "auto"
    split_seed: int = 0  # which examples are held out; the same for every trainer.seed, so seeds compare
    limit_train: int | None = None  # first N training examples only, for quick runs
    limit_test: int | None = None
    normalize: bool = True  # standardise with the training split's mean and std
    # synthetic only: a deterministic Gaussian-cluster problem shaped like MNIST
    num_train: int = 1024
    num_test: int = 256
    num_features: int = 784
    num_classes: int = 10
    noise: float = 2.0  # std of the per-feature noise; class means have unit variance
    generator_seed: int = 0  # the synthetic problem is the same whatever trainer.seed is


@dataclass
class TrainerConfig:
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps
    epochs: int = 3
    seed: int = 0  # the init draw, the batch order and the dropout masks
    deterministic: bool = False  # torch.use_deterministic_algorithms; CPU runs are reproducible either way
    cpu_threads: Any = "auto"  # auto: all cores for a lone run, shared out among parallel jobs; or an int
    eval_every: int = 1  # epochs between evaluations on the held-out split (the last epoch always evaluates)
    log_every_n_steps: int = 100  # progress bar, divergence and train_* targets: one host sync each
    # conditions whose first step, epoch and second each run's summary records (vgbench.targets): train_* at
    # each log event, val_* at each evaluation; `train_acc:0.8` is train_acc >= 0.8, `val_loss:0.1` <= 0.1
    targets: list[str] = field(default_factory=lambda: ["train_acc:0.8"])
    stop_at: str | None = None  # one such condition: the run ends (status completed) once it holds
    checkpoint: bool = True  # checkpoint.pt in the run folder at each epoch end, written atomically
    resume: bool = False  # continue from the run folder's checkpoint.pt (set hydra.run.dir to that folder)
    amp: str = "none"  # none, bf16, fp16 (fp16 needs CUDA)
    # CUDA: float32 matrix products in TensorFloat-32 (inputs rounded to 10 mantissa bits, sums in float32),
    # faster on Ampere and later GPUs and a little less exact (docs/gpu.md: what it changes in the statistics).
    # Off, as in PyTorch: IEEE float32. No effect on a CPU or MPS
    tf32: bool = False
    # CUDA: replay the step of each full batch from a CUDA graph (one for plain steps, one for the monitor's),
    # launched in one call instead of kernel by kernel (vgbench.graphs). null: wherever the step can be (not
    # fp16, Adam or dropout), else op by op; true: the same, with a warning where it cannot be; false: always
    # op by op
    cuda_graphs: bool | None = None
    fail_on_divergence: bool = False  # a non-finite loss ends the run with status diverged; true also exits 1
    skip_completed: bool = True  # a run whose summary.json already records this very run is not run again


@dataclass
class MonitorConfig:
    enabled: bool = True  # per-layer gradient and activation statistics (see vgbench.monitor)
    # Measured at step 0 (the initialised model, before its first update), every N steps and at each
    # epoch's last step. At 100 a 5x256 MLP trains at the speed it has unmonitored (bench_monitor.py).
    every_n_steps: int = 100
    histogram_every_n_steps: int = 1000  # weight-gradient and activation histograms; 0 turns them off
    # at step 0: the singular values of the hidden stack's input-output Jacobian on JACOBIAN_EXAMPLES examples
    # (dynamical isometry; vgbench.monitor.jacobian_spectrum)
    jacobian: bool = False


@dataclass
class LoggerConfig:
    tensorboard: bool = True  # event files in the run folder; the monitor still feeds summary.json without


@dataclass
class Config:
    activation: ActivationConfig = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = MISSING
    data: DataConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    loss: str = "cross_entropy"  # see vgbench.losses.LOSSES


SCHEMAS = {
    "activation": ActivationConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "data": DataConfig,
    "trainer": TrainerConfig,
    "monitor": MonitorConfig,
    "logger": LoggerConfig,
}

# What the runs of one stack may differ in (see vgbench.train): each run draws its own init and batch
# order and keeps its own optimizer hyperparameters. Everything else fixes the sequence of operations.
PER_RUN_KEYS = (
    "trainer.seed",
    "trainer.targets",
    "trainer.stop_at",
    "optimizer.lr",
    "optimizer.weight_decay",
    "optimizer.momentum",
    "optimizer.betas",
    "optimizer.alpha",
    "optimizer.eps",
    "model.init",
    "model.init_std",
    "model.sigma_w2",
    "model.bias_init",
    "model.bias_std",
)
# Where and how a run computes, not what it computes: two configs that differ only here are one run.
PLACEMENT_KEYS = (
    "trainer.device",
    "trainer.cpu_threads",
    "trainer.resume",
    "trainer.skip_completed",
    "trainer.checkpoint",
    "trainer.fail_on_divergence",
    "trainer.cuda_graphs",
    "data.root",
    "data.eval_batch_size",
    "logger.tensorboard",
)


RUN_FOLDER_BYTES = 200  # a run folder's name at most: file systems allow 255, Hydra and tools add suffixes


def run_folder_name(override_dirname: str) -> str:
    """A sweep's run folder (`hydra.sweep.subdir`): its overrides as Hydra joins them
    (`activation=relu,model.depth=10`), made safe for a file system. A '/' in a value (a path, a module) is
    written %2F, so no value can make a folder outside the sweep folder; a name over RUN_FOLDER_BYTES keeps
    a readable prefix and ends in a hash of the whole name (the overrides themselves stay in .hydra/). The
    same overrides give the same name, so a sweep run again into its folder finds its runs."""
    name = override_dirname.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    if name in (".", ".."):
        name = name.replace(".", "%2E")
    encoded = name.encode()
    if len(encoded) <= RUN_FOLDER_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    prefix = encoded[: RUN_FOLDER_BYTES - len(digest) - 1].decode(errors="ignore")  # never half a character
    return f"{prefix}~{digest}"


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore, under `schema/` so that no group lists them as an option,
    and the resolver that names a sweep's run folders (`run_folder_name`).

    Every YAML file of a group starts from its schema (`defaults: [/schema/<group>@_here_, _self_]`).
    """
    store = ConfigStore.instance()
    store.store(group="schema", name="config", node=Config)
    for group, node in SCHEMAS.items():
        store.store(group="schema", name=group, node=node)
    OmegaConf.register_new_resolver("vgbench_run_folder", run_folder_name, replace=True)


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The app's config with command-line style overrides, composed outside a Hydra run (the lessons,
    `vgbench-data`, `vgbench-theory`, the benchmarks, the tests). Overrides Hydra cannot compose raise
    ConfigError with `command_line_error`'s line."""
    register_configs()
    with initialize_config_module(CONF_PACKAGE, version_base="1.3"):
        try:
            return compose("config", overrides=list(overrides))
        except (ConfigCompositionException, OverrideParseException) as error:
            raise ConfigError(command_line_error(error)) from error


def command_line_error(error: Exception) -> str:
    """What Hydra reports in a block when it cannot compose a command line, in one line that names the
    bad override and the valid choices (the group's options, the schema's keys)."""
    if isinstance(error, OverrideParseException):
        return f"cannot parse the override {error.override!r}: {error.message.splitlines()[0]}"
    if isinstance(error, MissingConfigException) and error.options and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        return f"{group}={option!r} is not valid; choose one of: {', '.join(error.options)}"
    cause = error.__cause__
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and is_dataclass(cause.object_type):
        parent = str(cause.full_key).rpartition(".")[0]
        keys = [f"{parent}.{item.name}" if parent else item.name for item in fields(cause.object_type)]
        close = difflib.get_close_matches(str(cause.full_key), keys, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{cause.full_key} is not a setting{hint}; choose one of: {', '.join(keys)}"
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:  # a value of the wrong type
        return f"{cause.full_key}={cause.value!r} is not valid; {str(cause.msg).splitlines()[0]}"
    report = str(error).split("Config search path:")[0]
    return " ".join(line.strip() for line in report.splitlines() if line.strip())


def flat_items(config: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config or dict as {'model.depth': 10, ...}; lists stay values."""
    container = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config
    flat: dict[str, Any] = {}
    for key, value in container.items():
        if isinstance(value, dict) and value:
            flat |= flat_items(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_key(config: Any, leave_out: Iterable[str]) -> str:
    """The config, less `leave_out` keys, as canonical JSON: equal keys mean equal configs."""
    skip = set(leave_out)
    return json.dumps({k: v for k, v in flat_items(config).items() if k not in skip}, sort_keys=True)


def task_part(config: DictConfig) -> DictConfig:
    """A Hydra job's config without its `hydra` node: what the run itself sees."""
    return OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])


def run_identity(config: Any) -> str:
    """What makes two runs the same run: everything but placement and the epoch budget (a resume may
    extend it). A checkpoint is resumed, and a completed run skipped, only under the same identity."""
    return config_key(config, (*PLACEMENT_KEYS, "trainer.epochs"))


def stack_key(config: Any) -> str:
    """Runs with equal stack keys perform the same sequence of operations and can train as one stack."""
    return config_key(config, (*PLACEMENT_KEYS, *PER_RUN_KEYS))


def group_into_stacks(keys: Sequence[Hashable], max_stack: int) -> list[list[int]]:
    """Indices into `keys` grouped by (stack) key, in order of first appearance, at most `max_stack` each."""
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return [members[i : i + max_stack] for members in groups.values() for i in range(0, len(members), max_stack)]


def hidden_widths(model: ModelConfig | DictConfig) -> list[int]:
    """The width of each hidden layer, from `model.width` (one int for all, or a list)."""
    width = model.width
    if isinstance(width, int) and not isinstance(width, bool):
        widths = [width] * model.depth
    elif isinstance(width, (list, tuple)) or hasattr(width, "__iter__"):
        widths = list(width)
        if len(widths) != model.depth:
            raise ConfigError(
                f"model.width={widths} has {len(widths)} entries but model.depth={model.depth}; "
                "give one int, or one width per hidden layer"
            )
    else:
        raise ConfigError(f"model.width={width!r} is not valid; give an int or a list of ints")
    for w in widths:
        if not isinstance(w, int) or isinstance(w, bool) or w < 1:
            raise ConfigError(f"model.width={width!r} is not valid; every width must be an int >= 1")
    return widths


def validation_size(val_size: Any, num_train: int) -> int:
    """Examples to hold out of `num_train`: `auto` is a tenth, at most 5000; an int is taken as given."""
    if val_size == "auto":
        return min(5000, num_train // 10)
    if not isinstance(val_size, int) or isinstance(val_size, bool) or val_size < 0:
        raise ConfigError(f"data.val_size={val_size!r} is not valid; use 'auto' or an int >= 0")
    if val_size >= num_train:
        raise ConfigError(
            f"data.val_size={val_size} leaves no training examples out of {num_train}; "
            "use a smaller value, 0 (evaluate on the test split) or auto"
        )
    return val_size
