"""Check a whole config before any data loads: every choice against the registry next to the code that
implements it (`vgbench.optim.OPTIMIZERS`, `vgbench.model.WEIGHT_INITS`, ...), every range, naming the bad
value and the valid choices in one line. Adding an option touches one registry entry and one YAML file.

It sits above the registries (which import torch) and below the trainer: `vgbench.config` stays torch-free
for the launcher process.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig

from vgbench.activations import check_activation
from vgbench.config import Config, hidden_widths, validation_size
from vgbench.data import DATASETS
from vgbench.errors import ConfigError, at_least, choice, fraction
from vgbench.losses import LOSSES
from vgbench.model import BIAS_INITS, NORMS, WEIGHT_INITS
from vgbench.optim import OPTIMIZERS
from vgbench.precision import AMP_MODES
from vgbench.runtime import check_device_name
from vgbench.targets import run_targets


def validate(cfg: Config | DictConfig) -> None:
    """Check every choice and range before any data is loaded; raise ConfigError on the first bad one."""
    check_activation(cfg.activation)
    at_least("model.depth", cfg.model.depth, 1)
    hidden_widths(cfg.model)
    choice("model.init", cfg.model.init, WEIGHT_INITS)
    choice("model.bias_init", cfg.model.bias_init, ("auto", *BIAS_INITS))  # auto: see bias_scheme
    choice("model.norm", cfg.model.norm, NORMS)
    fraction("model.dropout", cfg.model.dropout)
    choice("loss", cfg.loss, LOSSES)
    choice("optimizer.name", cfg.optimizer.name, OPTIMIZERS)
    OPTIMIZERS[cfg.optimizer.name].check(cfg.optimizer)
    choice("data.name", cfg.data.name, DATASETS)
    if cfg.data.name == "synthetic":  # the generated problem's own shape
        for key, minimum in (("num_train", 1), ("num_test", 1), ("num_features", 1), ("num_classes", 2)):
            at_least(f"data.{key}", cfg.data[key], minimum)
    at_least("data.batch_size", cfg.data.batch_size, 1)
    at_least("data.eval_batch_size", cfg.data.eval_batch_size, 1)
    if cfg.data.val_size != "auto":  # the type and sign here; the size against the data at load
        validation_size(cfg.data.val_size, math.inf)
    for key in ("limit_train", "limit_test"):
        if cfg.data[key] is not None:
            at_least(f"data.{key}", cfg.data[key], 1)
    at_least("trainer.epochs", cfg.trainer.epochs, 1)
    at_least("trainer.eval_every", cfg.trainer.eval_every, 1)
    at_least("trainer.log_every_n_steps", cfg.trainer.log_every_n_steps, 1)
    run_targets(cfg.trainer.targets, cfg.trainer.stop_at, cfg.data.val_size)
    choice("trainer.amp", cfg.trainer.amp, AMP_MODES)
    check_device_name(cfg.trainer.device)
    at_least("monitor.every_n_steps", cfg.monitor.every_n_steps, 1)
    at_least("monitor.histogram_every_n_steps", cfg.monitor.histogram_every_n_steps, 0)
    if cfg.monitor.jacobian and (cfg.model.norm != "none" or cfg.model.residual or cfg.model.dropout > 0):
        raise ConfigError(
            "monitor.jacobian=true measures plain layers: it needs model.norm=none, "
            "model.residual=false and model.dropout=0"
        )
    threads = cfg.trainer.cpu_threads
    if threads != "auto" and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"trainer.cpu_threads={threads!r} is not valid; use 'auto' or an int >= 1")
