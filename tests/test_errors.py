"""The ground floor (vgbench.errors): one line naming the bad value and the valid choices, exit code 2."""

import pytest

from vgbench.errors import ConfigError, UserError, at_least, choice, exit_with_error, fraction


def test_a_user_error_stops_with_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        exit_with_error(UserError("data.root=/x is a file"))
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: data.root=/x is a file\n"


def test_choice_names_the_value_and_every_choice():
    choice("loss", "mse", ("cross_entropy", "mse"))
    with pytest.raises(ConfigError) as error:
        choice("loss", "l1", ("cross_entropy", "mse"))
    assert str(error.value) == "loss='l1' is not valid; choose one of: cross_entropy, mse"
    assert isinstance(error.value, UserError) and isinstance(error.value, ValueError)


@pytest.mark.parametrize(
    ("value", "minimum", "strict", "ok"),
    [(1, 1, False, True), (0, 1, False, False), (1, 1, True, False), (1.5, 1, True, True)],
)
def test_at_least_holds_its_bound(value, minimum, strict, ok):
    if ok:
        at_least("model.depth", value, minimum, strict)
        return
    with pytest.raises(
        ConfigError, match=f"model.depth={value!r} is not valid; it must be {'>' if strict else '>='} 1"
    ):
        at_least("model.depth", value, minimum, strict)


@pytest.mark.parametrize(
    ("value", "interval", "ok"),
    [
        (0.0, "[0, 1)", True),
        (0.999, "[0, 1)", True),
        (1.0, "[0, 1)", False),
        (-0.1, "[0, 1)", False),
        (1.0, "(0, 1]", True),
        (0.0, "(0, 1]", False),
    ],
)
def test_fraction_holds_its_interval(value, interval, ok):
    if ok:
        fraction("model.dropout", value, interval)
        return
    with pytest.raises(ConfigError, match=rf"model.dropout={value!r} is not valid; it must be in \{interval[0]}"):
        fraction("model.dropout", value, interval)
