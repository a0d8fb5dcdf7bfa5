"""Bad input: one clear line that names the value and the valid choices, before any data is loaded."""

import pytest

from tests.conftest import make_cfg, run_app
from vgbench.config import ConfigError, validate


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.depth=0", "model.depth=0 is not valid; it must be >= 1"),
        ("model.width=0", "model.width=0 is not valid; every width must be an int >= 1"),
        ("optimizer.lr=0", "optimizer.lr=0.0 is not valid; it must be > 0.0"),
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 is not valid; it must be > 0.0"),
        ("data.batch_size=0", "data.batch_size=0 is not valid; it must be >= 1"),
        ("model.init=he", "model.init='he' is not valid; choose one of: auto, pytorch_default"),
        ("model.norm=groupnorm", "model.norm='groupnorm' is not valid; choose one of: none, batchnorm, layernorm"),
        ("loss=hinge", "loss='hinge' is not valid; choose one of: cross_entropy, mse"),
        ("trainer.amp=fp8", "trainer.amp='fp8' is not valid; choose one of: none, bf16, fp16"),
        ("trainer.cpu_threads=0", "trainer.cpu_threads=0 is not valid; use 'auto' or an int >= 1"),
        ("model.dropout=1.0", "model.dropout=1.0 is not valid; it must be in [0, 1)"),
    ],
)
def test_validate_names_value_and_choices(override, message):
    with pytest.raises(ConfigError) as error:
        validate(make_cfg(override))
    assert str(error.value).startswith(message)


def test_defaults_are_valid():
    cfg = make_cfg()
    validate(cfg)
    assert (cfg.activation.name, cfg.model.depth, cfg.optimizer.name, cfg.optimizer.lr, cfg.data.batch_size) == (
        "relu", 3, "sgd", 0.1, 64)  # fmt: skip


def test_every_preset_composes_and_validates():
    for preset in ("mnist_default",):
        validate(make_cfg(f"experiment={preset}"))
    for optimizer in ("sgd", "momentum", "adam", "rmsprop"):
        validate(make_cfg(f"optimizer={optimizer}"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model.depth=0"], "error: model.depth=0 is not valid; it must be >= 1"),
        (
            ["trainer.device=tpu"],
            "error: trainer.device='tpu' is not valid; choose one of: auto, cpu, cuda, cuda:N, mps",
        ),
        (["activation=swishy"], "Could not find 'activation/swishy'"),  # Hydra lists the available ones
        (["model.depth=three"], "Value 'three' of type 'str' could not be converted to Integer"),
        (["model.depht=3"], "Could not override 'model.depht'"),
    ],
)
def test_cli_rejects_bad_input_before_loading_data(tmp_path, args, expected):
    result = run_app(*args, f"hydra.run.dir={tmp_path / 'run'}", env={"VGBENCH_DATA": str(tmp_path / "data")})
    assert result.returncode != 0
    assert expected in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was provisioned
    if args[0].startswith(("model.depth=0", "trainer.device")):
        assert result.stderr.strip().count("\n") == 0  # one line, no traceback
    if args[0] == "activation=swishy":
        assert "relu" in result.stderr and "sigmoid" in result.stderr


def test_device_cuda_without_cuda_is_a_clear_error():
    import torch

    from vgbench.runtime import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="trainer.device='cuda' but CUDA is not available here"):
        resolve_device("cuda")
