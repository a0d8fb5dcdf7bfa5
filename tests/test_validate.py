"""Validation before any data loads (vgbench.validate): every choice from its registry, one line each."""

import pytest

from tests.conftest import make_cfg
from vgbench.data import DATASETS
from vgbench.errors import ConfigError
from vgbench.losses import LOSSES
from vgbench.model import BIAS_INITS, NORMS, WEIGHT_INITS
from vgbench.optim import OPTIMIZERS
from vgbench.validate import validate


@pytest.mark.parametrize(
    ("override", "key", "choices"),
    [
        ("model.init=he", "model.init", WEIGHT_INITS),
        ("model.bias_init=ones", "model.bias_init", BIAS_INITS),
        ("model.norm=groupnorm", "model.norm", NORMS),
        ("loss=hinge", "loss", LOSSES),
        ("optimizer.name=lbfgs", "optimizer.name", OPTIMIZERS),
        ("data.name=cifar", "data.name", DATASETS),
    ],
)
def test_choices_come_from_the_registries(override, key, choices, monkeypatch):
    value = override.split("=")[1]
    with pytest.raises(ConfigError) as error:
        validate(make_cfg(override))
    listed = ["auto", *choices] if key == "model.bias_init" else list(choices)  # auto follows the weight init
    assert str(error.value) == f"{key}={value!r} is not valid; choose one of: {', '.join(listed)}"
    monkeypatch.setitem(choices, value, choices[next(iter(choices))])  # a new entry is a new choice
    validate(make_cfg(override))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.depth=0", "model.depth=0 is not valid; it must be >= 1"),
        ("model.width=0", "model.width=0 is not valid; every width must be an int >= 1"),
        ("optimizer.lr=0", "optimizer.lr=0.0 is not valid; it must be > 0.0"),
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 is not valid; it must be > 0.0"),
        ("data.batch_size=0", "data.batch_size=0 is not valid; it must be >= 1"),
        ("data.val_size=-5", "data.val_size=-5 is not valid; use 'auto' or an int >= 0"),
        ("trainer.amp=fp8", "trainer.amp='fp8' is not valid; choose one of: none, bf16, fp16"),
        ("trainer.cpu_threads=0", "trainer.cpu_threads=0 is not valid; use 'auto' or an int >= 1"),
        ("trainer.device=tpu", "trainer.device='tpu' is not valid; choose one of: auto, cpu, cuda, cuda:N, mps"),
        ("model.dropout=1.0", "model.dropout=1.0 is not valid; it must be in [0, 1)"),
        ("optimizer.nesterov=true", "optimizer.nesterov=true needs optimizer.momentum > 0"),
        ("trainer.stop_at=accuracy:0.9", "trainer.stop_at='accuracy:0.9': 'accuracy' is not a metric a target can use"),
        ("trainer.targets=[train_acc]", "trainer.targets='train_acc' is not a condition; write <metric>:<number>"),
        (
            "trainer.targets=train_acc:0.9",
            "trainer.targets='train_acc:0.9' is not valid; Invalid value assigned: str is not a List",
        ),
    ],
)
def test_validate_names_value_and_choices(override, message):
    with pytest.raises(ConfigError) as error:
        validate(make_cfg(override))
    assert str(error.value).startswith(message)


def test_defaults_are_valid():
    cfg = make_cfg()
    validate(cfg)
    assert (
        cfg.activation.name,
        cfg.model.depth,
        cfg.optimizer.name,
        cfg.optimizer.lr,
        cfg.data.batch_size,
        cfg.trainer.epochs,
    ) == ("relu", 3, "sgd", 0.1, 64, 3)
