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
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from pathlib import Path

import google_crc32c
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
        data = event.SerializeToString()
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
