"""Each run's train.log in a stack: the stack's own lines, and of the lines about one run only its own.

A stack trains K runs in one process, and every run's folder keeps a train.log. Lines about the stack
(its shape, its device, a warning) go to every one of them. Lines about one run (its epochs, its summary)
name it with `about(run_dir)` and go only to its own file: copied into every file, they would cost K^2
writes and flushes, which made most of a 1024-run stack's time outside its training.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

RUN_KEY = "vgbench_run"  # the LogRecord attribute that names the run a line is about


def about(run_dir: Path) -> dict[str, dict[str, str]]:
    """`extra=` for a log call about the run in this folder."""
    return {"extra": {RUN_KEY: os.path.abspath(run_dir)}}


class OwnLinesOnly(logging.Filter):
    """Lets through a handler the stack's lines and those about the run in `run_dir`."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run = os.path.abspath(run_dir)

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, RUN_KEY, self.run) == self.run


class RunLogFiles(logging.Handler):
    """One handler for many runs' log files: a line about one run into its file, any other into all."""

    def __init__(self, run_dirs: Iterable[Path], name: str, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.files: dict[str, logging.FileHandler] = {}
        for run_dir in run_dirs:
            handler = logging.FileHandler(Path(run_dir) / f"{name}.log")
            handler.setFormatter(formatter)
            self.files[os.path.abspath(run_dir)] = handler

    def emit(self, record: logging.LogRecord) -> None:
        run = getattr(record, RUN_KEY, None)
        if run is None:
            for handler in self.files.values():
                handler.handle(record)
        elif run in self.files:
            self.files[run].handle(record)

    def close(self) -> None:
        for handler in self.files.values():
            handler.close()
        super().close()
