"""The ground floor: the errors a user's mistake raises, how a command stops on one (and parses its
arguments), and the small checks that name a bad value and the valid choices. Imports nothing of vgbench,
and no torch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any, NoReturn


class UserError(Exception):
    """A problem with what the user gave (a value, a file, a folder): reported as one line, exit code 2."""


class ConfigError(UserError, ValueError):
    """A config value that is well-typed but not allowed."""


def exit_with_error(message: object) -> NoReturn:
    """How every vgbench command stops on a user's mistake: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class CommandParser(argparse.ArgumentParser):
    """argparse for vgbench's commands: `--help` and `-h` print the usage (exit 0); a bad argument stops
    like every other user error, in one line with exit code 2 (argparse prints the usage above it)."""

    def error(self, message: str) -> NoReturn:
        exit_with_error(f"{self.prog}: {message} (see {self.prog} --help)")


def choice(key: str, value: Any, choices: Iterable[str]) -> None:
    """`value` must be one of `choices`."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(choices)}")


def at_least(key: str, value: Any, minimum: float, strict: bool = False) -> None:
    """`value` must be >= `minimum` (> with `strict`)."""
    ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ConfigError(f"{key}={value!r} is not valid; it must be {bound}")


FRACTIONS = {"[0, 1)": lambda value: 0 <= value < 1, "(0, 1]": lambda value: 0 < value <= 1}


def fraction(key: str, value: float, interval: str = "[0, 1)") -> None:
    """A value in one of the unit intervals of FRACTIONS (dropout, momentum, betas: [0, 1); a share: (0, 1])."""
    if not FRACTIONS[interval](value):
        raise ConfigError(f"{key}={value!r} is not valid; it must be in {interval}")
