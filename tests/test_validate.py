"""Validation before any data loads (vgbench.validate): every choice from its registry, one line each."""

import pytest

from tests.conftest import make_cfg
from vgbench.errors import ConfigError
from vgbench.validate import validate


def test_choices_come_from_the_registries(override, key, choices, monkeypatch):
    value = override.split("=")[1]
    with pytest.raises(ConfigError) as error:
        validate(make_cfg(override))
    listed = ["auto", *choices] if key == "model.bias_init" else list(choices)  # auto follows the weight init
    assert str(error.value) == f"{key}={value!r} is not valid; choose one of: {', '.join(listed)}"
    monkeypatch.setitem(choices, value, choices[next(iter(choices))])  # a new entry is a new choice
    validate(make_cfg(override))

def test_validate_names_value_and_choices(override, message):
    with pytest.raises(ConfigError) as error:
        validate(make_cfg(override))
    assert str(error.value).startswith(message)

def test_defaults_are_valid():
    cfg = make_cfg()
    validate(cfg)
    assert (cfg.activation.name, cfg.model.depth, cfg.optimizer.name, cfg.optimizer.lr, cfg.data.batch_size,
            cfg.trainer.epochs) == ("relu", 3, "sgd", 0.1, 64, 3)  # fmt: skip
