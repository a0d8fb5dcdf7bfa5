"""The config: each default in one place, choices from the registries, one clear line for bad input."""

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import SWEEP_BASE, make_cfg, run_app
from vgbench.config import CONF_DIR, SCHEMAS, flat_items, group_into_stacks, run_identity, stack_key
from vgbench.errors import ConfigError
from vgbench.validate import validate

GROUP_FILES = sorted(p for group in SCHEMAS for p in (CONF_DIR / group).glob("*.yaml"))
PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_every_default_lives_in_one_place():
    """The dataclasses hold every default. A group's `default` file adds nothing to its schema, and no
    YAML file restates a schema default: so the two can never disagree (they did: trainer.epochs 1 vs 3)."""
    composed = make_cfg()
    for group in ("model", "trainer", "monitor", "logger"):
        assert OmegaConf.to_container(composed[group]) == OmegaConf.to_container(OmegaConf.structured(SCHEMAS[group]))
    restated = []
    for path in GROUP_FILES:
        schema = flat_items(OmegaConf.to_container(OmegaConf.structured(SCHEMAS[path.parent.name])))
        values = flat_items({k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k != "defaults"})
        restated += [
            f"{path.parent.name}/{path.name}: {key}"
            for key, value in values.items()
            if key in schema and schema[key] == value
        ]
    assert restated == []


def test_every_group_file_starts_from_its_schema():
    for path in GROUP_FILES:
        assert yaml.safe_load(path.read_text())["defaults"][0] == f"/schema/{path.parent.name}@_here_", path


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_validates(preset):
    validate(make_cfg(f"experiment={preset}"))


@pytest.mark.parametrize("group", list(SCHEMAS))
def test_schemas_are_not_offered_as_choices(group):
    with pytest.raises(ConfigError) as error:
        make_cfg(f"{group}=nope")
    prefix, options = str(error.value).split("; choose one of: ")
    assert prefix == f"{group}='nope' is not valid"
    assert options.split(", ") == sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))  # the files, no schema


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "activation=swishy",
            "activation='swishy' is not valid; choose one of: binary_step, custom, elu, gelu, "
            "hardtanh, leaky_relu, linear, mish, relu, selu, sigmoid, silu, softmax, softplus, tanh",
        ),
        (
            "+experiment=nope",
            "experiment='nope' is not valid; choose one of: batchnorm, criticality, dropout_criticality, "
            "finite_width, init_study, isometry, lr_study, mnist_default, residual, vanishing",
        ),
        (
            "model.depht=3",
            "model.depht is not a setting (did you mean model.depth?); choose one of: model.depth, "
            "model.width, model.init, model.init_std, model.sigma_w2, model.bias_init, model.bias_std, "
            "model.norm, model.residual, model.dropout",
        ),
        (
            "depth=3",
            "depth is not a setting; choose one of: activation, model, optimizer, data, trainer, monitor, logger, loss",
        ),
        (
            "model.depth=three",
            "model.depth='three' is not valid; Value 'three' of type 'str' could not be converted to Integer",
        ),
        (
            "data.batch_size=1.5",
            "data.batch_size=1.5 is not valid; Value '1.5' of type 'float' could not be converted to Integer",
        ),
        ("model.depth=[", "cannot parse the override 'model.depth=[': no viable alternative at input '['"),
        (
            "+model.depth=3",
            "Could not append to config. An item is already at 'model.depth'. Either remove + "
            "prefix: 'model.depth=3' Or add a second + to add or override 'model.depth': "
            "'++model.depth=3'",
        ),
    ],
)
def test_a_command_line_hydra_cannot_compose_is_one_line(override, expected):
    with pytest.raises(ConfigError) as error:
        make_cfg(override)
    assert str(error.value) == expected  # command_line_error's line


@pytest.mark.slow
def test_every_group_option_composes():
    for path in GROUP_FILES:
        extra = ["activation.target=tests.custom_activations.scaled_softsign"] if path.stem == "custom" else []
        validate(make_cfg(f"{path.parent.name}={path.stem}", *extra))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model.depth=0"], "error: model.depth=0 is not valid; it must be >= 1"),
        (
            ["trainer.device=tpu"],
            "error: trainer.device='tpu' is not valid; choose one of: auto, cpu, cuda, cuda:N, mps",
        ),
        (["activation=swishy"], "error: activation='swishy' is not valid; choose one of: binary_step, custom,"),
        (["model.depth=three"], "error: model.depth='three' is not valid; Value 'three' of type 'str' could not"),
        (["model.depht=3"], "error: model.depht is not a setting (did you mean model.depth?); choose one of:"),
    ],
)
def test_cli_rejects_bad_input_before_loading_data(tmp_path, args, expected):
    result = run_app(*args, f"hydra.run.dir={tmp_path / 'run'}", env={"VGBENCH_DATA": str(tmp_path / "data")})
    assert result.returncode == 2
    assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1  # one line, no traceback
    assert not (tmp_path / "data").exists()  # nothing was provisioned
    assert "activation_schema" not in result.stderr  # the choices are the group's files, not its schema


def test_conf_dir_is_the_repository_conf():
    assert Path(__file__).resolve().parents[1] / "conf" == CONF_DIR


@pytest.mark.slow
def test_the_commands_that_compose_a_config_stop_on_bad_input_with_one_line_and_exit_2(capsys):
    from vgbench.provision import main as data_main
    from vgbench.theory import main as theory_main

    for command, args, expected in [
        (theory_main, ["activation=swishy"], "activation='swishy' is not valid; choose one of: binary_step, custom,"),
        (theory_main, ["model.depth=0"], "model.depth=0 is not valid; it must be >= 1"),
        (data_main, ["data=synthetic"], "data='synthetic' needs no provisioning; choose one of: mnist, fashion_mnist"),
        (data_main, ["data.roots=x"], "data.roots is not a setting (did you mean data.root?); choose one of:"),
    ]:
        with pytest.raises(SystemExit) as stop:
            command(args)
        error = capsys.readouterr().err
        assert stop.value.code == 2 and error.startswith(f"error: {expected}") and error.count("\n") == 1, error


def test_jobs_group_by_stack_key_in_order_and_split_at_max_stack():
    keys = ["a", "b", "a", "a", "c", "b", "a"]
    assert group_into_stacks(keys, 64) == [[0, 2, 3, 6], [1, 5], [4]]
    assert group_into_stacks(keys, 2) == [[0, 2], [3, 6], [1, 5], [4]]


def test_stack_keys_ignore_per_run_keys_and_placement():
    base = stack_key(make_cfg(*SWEEP_BASE))
    assert (
        stack_key(
            make_cfg(
                *SWEEP_BASE,
                "trainer.seed=3",
                "optimizer.lr=0.5",
                "model.init=orthogonal",
                "trainer.device=cpu",
                "logger.tensorboard=false",
            )
        )
        == base
    )
    for other in (
        "model.width=64",
        "optimizer=adam",
        "trainer.amp=bf16",
        "trainer.tf32=true",
        "data.batch_size=32",
        "trainer.epochs=2",
    ):
        assert stack_key(make_cfg(*SWEEP_BASE, other)) != base, other


def test_tf32_makes_another_run_and_is_validated():
    """TensorFloat-32 changes a run's numbers on a GPU: another run, not a placement; a bool."""
    assert run_identity(make_cfg(*SWEEP_BASE, "trainer.tf32=true")) != run_identity(make_cfg(*SWEEP_BASE))
    with pytest.raises(ConfigError, match="trainer.tf32"):
        make_cfg(*SWEEP_BASE, "trainer.tf32=sometimes")
