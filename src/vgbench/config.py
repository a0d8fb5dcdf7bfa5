"""Structured configs: the schema behind `conf/`, registered in Hydra's ConfigStore.

The YAML files under `conf/` hold the values; these dataclasses hold the types, so Hydra rejects a
wrong type or an unknown key at start-up. Choices that a type cannot express (which activation, which
init) are checked by `validate`, which names the bad value and the valid ones in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the repo's conf/ (the package installs editable)


class ConfigError(ValueError):
    """A config value that is well-typed but not allowed; the message is one line."""


@dataclass
class ActivationConfig:
    name: str = MISSING
    # Parameters of the function (leaky slope, ELU alpha, ...); each activation file lists its own.
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class ModelConfig:
    depth: int = 3  # number of hidden layers
    width: Any = 256  # int, or a list with one width per hidden layer
    init: str = "auto"
    init_std: float = 0.01  # for init=normal
    bias_init: str = "auto"  # pytorch_default when init=pytorch_default (as nn.Linear does), else zeros
    bias_std: float = 0.01  # for bias_init=normal
    norm: str = "none"
    residual: bool = False
    dropout: float = 0.0


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd and momentum
    nesterov: bool = False  # momentum
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam
    alpha: float = 0.99  # rmsprop smoothing constant
    eps: float = 1e-8  # adam and rmsprop


@dataclass
class DataConfig:
    name: str = MISSING
    root: str = MISSING  # data folder; see conf/data/*.yaml for the default and its env variable
    batch_size: int = 64
    eval_batch_size: int = 1000
    val_size: int = 0  # examples held out of the training split for per-epoch validation
    limit_train: int | None = None  # first N training examples only, for quick runs
    limit_test: int | None = None
    normalize: bool = True  # standardise with the training split's mean and std
    # synthetic only: a deterministic Gaussian-cluster problem shaped like MNIST
    num_train: int = 1024
    num_test: int = 256
    num_features: int = 784
    num_classes: int = 10
    noise: float = 2.0
    generator_seed: int = 0  # the synthetic problem is the same whatever trainer.seed is


@dataclass
class TrainerConfig:
    device: str = "auto"
    epochs: int = 1
    seed: int = 0
    deterministic: bool = False
    cpu_threads: Any = "auto"  # "auto" or an int (a Union here trips omegaconf#1087 under Hydra)
    eval_every: int = 1  # evaluate on the held-out split every N epochs (and always at the end)
    log_every_n_steps: int = 100  # progress-bar refresh and divergence check: one host sync each
    checkpoint: bool = True  # write checkpoint.pt atomically at each epoch end
    resume: bool = False  # continue from checkpoint.pt in the run folder, if there is one
    amp: str = "none"  # none, bf16, fp16 (fp16 needs CUDA)
    fail_on_divergence: bool = False
    skip_completed: bool = True  # a run whose summary.json already says completed is not run again


@dataclass
class MonitorConfig:
    enabled: bool = True  # per-layer gradient and activation statistics (see vgbench.monitor)
    every_n_steps: int = 100  # measured at step 0, every N steps and at each epoch end
    histogram_every_n_steps: int = 1000  # weight-gradient and activation histograms; 0 turns them off


@dataclass
class LoggerConfig:
    tensorboard: bool = True  # event files in the run folder; the monitor still feeds summary.json without


@dataclass
class Config:
    activation: ActivationConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    data: DataConfig = MISSING
    trainer: TrainerConfig = MISSING
    monitor: MonitorConfig = MISSING
    logger: LoggerConfig = MISSING
    loss: str = "cross_entropy"


LOSSES = ("cross_entropy", "mse")
INITS = (
    "auto",
    "pytorch_default",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "normal",
    "uniform_standard",
    "orthogonal",
)
BIAS_INITS = ("auto", "zeros", "pytorch_default", "normal")
NORMS = ("none", "batchnorm", "layernorm")
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
DATASETS = ("mnist", "fashion_mnist", "synthetic")
AMP_MODES = ("none", "bf16", "fp16")


def register_configs() -> None:
    """Attach the schemas to the YAML files of each config group (their `defaults: [_self_]` base)."""
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    store.store(group="activation", name="activation_schema", node=ActivationConfig)
    store.store(group="model", name="model_schema", node=ModelConfig)
    store.store(group="optimizer", name="optimizer_schema", node=OptimizerConfig)
    store.store(group="data", name="data_schema", node=DataConfig)
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    store.store(group="monitor", name="monitor_schema", node=MonitorConfig)
    store.store(group="logger", name="logger_schema", node=LoggerConfig)


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The app's config with command-line style overrides, composed outside a Hydra run (the lessons,
    `vgbench-data`, the benchmarks, the tests)."""
    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _choice(key: str, value: Any, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(choices)}")


def _at_least(key: str, value: Any, minimum: float, strict: bool = False) -> None:
    ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ConfigError(f"{key}={value!r} is not valid; it must be {bound}")


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


def validate(cfg: Config | DictConfig) -> None:
    """Check every choice and range before any data is loaded; raise ConfigError on the first bad one."""
    from vgbench.activations import ACTIVATIONS, check_params  # late import: keeps config torch-free

    _choice("activation", cfg.activation.name, sorted(ACTIVATIONS))
    check_params(cfg.activation.name, dict(cfg.activation.params))
    _at_least("model.depth", cfg.model.depth, 1)
    hidden_widths(cfg.model)
    _choice("model.init", cfg.model.init, INITS)
    _choice("model.bias_init", cfg.model.bias_init, BIAS_INITS)
    _choice("model.norm", cfg.model.norm, NORMS)
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.model.dropout!r} is not valid; it must be in [0, 1)")
    _choice("loss", cfg.loss, LOSSES)
    _choice("optimizer.name", cfg.optimizer.name, OPTIMIZERS)
    _at_least("optimizer.lr", cfg.optimizer.lr, 0.0, strict=True)
    _at_least("optimizer.weight_decay", cfg.optimizer.weight_decay, 0.0)
    _choice("data.name", cfg.data.name, DATASETS)
    _at_least("data.batch_size", cfg.data.batch_size, 1)
    _at_least("data.eval_batch_size", cfg.data.eval_batch_size, 1)
    _at_least("data.val_size", cfg.data.val_size, 0)
    for key in ("limit_train", "limit_test"):
        if cfg.data[key] is not None:
            _at_least(f"data.{key}", cfg.data[key], 1)
    _at_least("trainer.epochs", cfg.trainer.epochs, 1)
    _at_least("trainer.eval_every", cfg.trainer.eval_every, 1)
    _at_least("trainer.log_every_n_steps", cfg.trainer.log_every_n_steps, 1)
    _choice("trainer.amp", cfg.trainer.amp, AMP_MODES)
    _at_least("monitor.every_n_steps", cfg.monitor.every_n_steps, 1)
    _at_least("monitor.histogram_every_n_steps", cfg.monitor.histogram_every_n_steps, 0)
    threads = cfg.trainer.cpu_threads
    if threads != "auto" and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"trainer.cpu_threads={threads!r} is not valid; use 'auto' or an int >= 1")
