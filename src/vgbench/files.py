"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

BEHIND_BYTES = 256 * 2**20  # queued at most in `written_behind`: past it the caller waits for the oldest writes


class _Behind:
    """The writes of one `written_behind` block: their threads, and those not yet seen done."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool, self.pending, self.queued = pool, deque[tuple[Future[None], int]](), 0

    def submit(self, path: Path, data: bytes, mode: int) -> None:
        self.pending.append((self.pool.submit(_write_atomic, path, data, mode), len(data)))
        self.queued += len(data)
        while self.pending and (self.queued > BEHIND_BYTES or self.pending[0][0].done()):
            future, size = self.pending.popleft()
            self.queued -= size
            future.result()  # waits when too much is queued; raises a failed write's error

    def finish(self) -> None:
        for future, _ in self.pending:
            future.result()


_BEHIND: ContextVar[_Behind | None] = ContextVar("vgbench_written_behind", default=None)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it; inside `written_behind`, on one
    of its threads."""
    mode = 0o666 & ~_umask()  # here: umask can only be read by setting it, which threads must not race on
    behind = _BEHIND.get()
    if behind is None:
        _write_atomic(path, data, mode)
    else:
        behind.submit(path, data, mode)


@contextmanager
def written_behind(threads: int = 4) -> Iterator[None]:
    """The atomic writes inside this block go to `threads` threads, so that the caller prepares the next file
    (pickles the next run's checkpoint, say) while one is written and synced, and several syncs wait on the
    disk at once (at most BEHIND_BYTES queued). The block ends when every write has: each file is then whole
    and synced, as one written in place would be, and the first write that failed raises its error there."""
    with ThreadPoolExecutor(threads, thread_name_prefix="vgbench-write") as pool:
        behind = _Behind(pool)
        token = _BEHIND.set(behind)
        try:
            yield
        finally:
            _BEHIND.reset(token)
    behind.finish()  # every write has ended: the pool's end waited for them


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600; shared data folders need the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: a diverged run's non-finite numbers (and an infinite depth scale) become
    null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(finite_or_none(obj), indent=2, allow_nan=False).encode() + b"\n")


def save_torch_atomic(path: Path, obj: Any) -> None:
    import torch  # here, not at the top: the report and the launcher use this module without torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())
