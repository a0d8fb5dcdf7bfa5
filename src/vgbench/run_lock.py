"""A run folder held by one process at a time. Torch-free: the launcher's resolvers ask it too (vgbench.app)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vgbench.errors import UserError


class RunFolderBusy(UserError):
    """Another process holds the run folder: it is training that run now."""


class RunLock:
    """A run folder held by one process at a time: an exclusive flock on the folder itself, so no file is
    made in it, and the kernel releases it when the process ends, however it ends (kill -9 included).
    Where flock does not exist (Windows) it holds nothing."""

    def __init__(self, run_dir: Path, create: bool = True) -> None:
        self.run_dir, self.create = run_dir, create
        self.fd: int | None = None

    def acquire(self) -> None:
        """Hold the folder (made if missing), or raise RunFolderBusy. A folder that cannot be made or is a
        file is not held: inspect_run_folder reports it."""
        try:
            import fcntl
        except ImportError:
            return
        if self.create:
            with contextlib.suppress(OSError):
                self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.run_dir.is_dir():
            return
        fd = os.open(self.run_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(
                f"{self.run_dir} is held by another process, which is training this run now; skipped here "
                "(run again once it has finished: a finished run is skipped, an interrupted one resumed)"
            ) from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops its flock
            self.fd = None


def held_elsewhere(run_dir: Path) -> bool:
    """Whether another process holds `run_dir` now (a probe: the hold, if taken, is dropped at once)."""
    lock = RunLock(run_dir, create=False)
    try:
        lock.acquire()
    except RunFolderBusy:
        return True
    lock.release()
    return False
