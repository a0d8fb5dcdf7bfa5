"""TensorBoard event files written directly: buffered, in the caller's thread, their checksums in C.

An event file is a sequence of TFRecord records, each an Event protobuf framed as
    uint64 length | uint32 masked CRC-32C of the length | the Event | uint32 masked CRC-32C of the Event.
Without TensorFlow, torch.utils.tensorboard's SummaryWriter writes them through TensorBoard's stub: a thread
per writer, which opens the file, appends one event and closes it again, and a checksum computed one Python
loop iteration per byte (about 0.25 ms for the 2 KB event of one measured step). Monitoring every step, that
thread took a core from the training's two; a stack of 64 runs had 64 of them. `EventFile` writes the same
records from the caller's thread into one buffered file, with google-crc32c's checksum; importing this
module also puts that checksum in place of the stub's for whatever else TensorBoard writes or reads (the
report reads the runs' files back: tensorflow/tensorboard#4023; tensorboardX does the same,
lanpa/tensorboardX#428). Where google-crc32c has no compiled extension (it then falls back to pure Python)
the stub's checksum stays.

A measured step's scalars (a hundred or more a run: each metric of each layer) go into one Summary, encoded by
`ScalarSummary` straight into protobuf's wire format: through the protobuf classes each value costs about a
microsecond to build, and a stack of 1024 runs writes one such event per run at every measured step.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from pathlib import Path

import google_crc32c
import numpy as np
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer import record_writer

MASK_DELTA = 0xA282EAD8  # TFRecord's mask: rotate right by 15 bits, add this (tensorflow/core/lib/hash/crc32c.h)
FILE_VERSION = "brain.Event:2"
FLUSH_SECONDS = 30.0  # a TensorBoard watching a run sees its events at most this late (SummaryWriter's flush_secs)
_FILE_NUMBER = itertools.count()  # tells apart the files one process opens in one second


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of `data`, as TFRecord stores it."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


if google_crc32c.implementation == "c":
    pywrap_tensorflow.masked_crc32c = masked_crc32c  # the reader's checks
    record_writer.masked_crc32c = masked_crc32c  # the writer's (it imported the stub's by name)


def varint(value: int) -> bytes:
    """A non-negative integer as protobuf's base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


class ScalarSummary:
    """A Summary of simple scalars in protobuf's wire format, the bytes `Summary(value=[Summary.Value(tag=t,
    simple_value=v), ...]).SerializeToString()` gives: each value a length-delimited field 1 holding its tag
    (field 1) and its float32 (field 2, fixed 32 bits). Everything but the floats depends on the tags alone,
    so each set of tags is laid out once, and an event's floats are written into a copy of that layout."""

    def __init__(self) -> None:
        self.layouts: dict[tuple[str, ...], tuple[bytes, np.ndarray]] = {}

    def encode(self, values: dict[str, float]) -> bytes:
        tags = tuple(values)
        layout = self.layouts.get(tags)
        if layout is None:
            layout = self.layouts[tags] = self._layout(tags)
        template, slots = layout
        with np.errstate(over="ignore"):  # beyond float32's range: infinite, as protobuf's float field makes it
            floats = np.fromiter(values.values(), dtype=np.float64, count=len(tags)).astype("<f4")
        encoded = bytearray(template)
        np.frombuffer(encoded, dtype=np.uint8)[slots] = floats.view(np.uint8).reshape(-1, 4)
        return bytes(encoded)

    @staticmethod
    def _layout(tags: tuple[str, ...]) -> tuple[bytes, np.ndarray]:
        """The Summary with every float zero, and where each float's 4 bytes sit in it ([values, 4])."""
        parts, starts, size = [], [], 0
        for tag in tags:
            # the tag (left out when empty, as protobuf leaves out a default), then field 2, 32-bit: the float
            value = (_length_delimited(1, tag.encode()) if tag else b"") + b"\x15"
            head = varint(1 << 3 | 2) + varint(len(value) + 4) + value  # the Value is Summary's field 1
            parts.append(head + bytes(4))
            starts.append(size + len(head))
            size += len(parts[-1])
        return b"".join(parts), np.add.outer(np.array(starts, dtype=np.int64), np.arange(4))


class EventFile:
    """One event file in `log_dir`, named as TensorBoard names them (events.out.tfevents.<seconds>.<host>.
    <pid>.<n>). `purge_step`: TensorBoard drops what the folder's earlier files hold from that step on
    (a resumed run's events after its checkpoint), as SummaryWriter(purge_step=...) asks it to."""

    def __init__(self, log_dir: Path, purge_step: int | None = None, flush_seconds: float = FLUSH_SECONDS) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.flush_seconds, self.flushed = flush_seconds, time.monotonic()
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_FILE_NUMBER)}"
        self.path = log_dir / name
        self.file = self.path.open("wb")
        self.add_event(Event(wall_time=time.time(), file_version=FILE_VERSION))
        if purge_step is not None:
            self.add_event(Event(wall_time=time.time(), step=purge_step, file_version=FILE_VERSION))
            start = SessionLog(status=SessionLog.START)
            self.add_event(Event(wall_time=time.time(), step=purge_step, session_log=start))

    def add_event(self, event: Event) -> None:
        self.add_record(event.SerializeToString())

    def add_summary_bytes(self, summary: bytes, step: int) -> None:
        """An Event of a Summary already in wire format (`ScalarSummary`): its wall time (field 1, a double),
        its step (field 2, a varint, left out at 0 as protobuf leaves out a default) and the summary (field 5)."""
        event = b"\x09" + struct.pack("<d", time.time()) + (b"\x10" + varint(step) if step else b"")
        self.add_record(event + _length_delimited(5, summary))

    def add_record(self, data: bytes) -> None:
        """One serialized Event, framed as a TFRecord."""
        header = struct.pack("<Q", len(data))
        self.file.write(
            header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))
        )
        if time.monotonic() - self.flushed >= self.flush_seconds:
            self.flush()

    def add_summary(self, summary: Summary, step: int) -> None:
        self.add_event(Event(wall_time=time.time(), step=step, summary=summary))

    def flush(self) -> None:
        self.file.flush()
        self.flushed = time.monotonic()

    def close(self) -> None:
        self.file.close()
