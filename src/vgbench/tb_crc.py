"""TensorBoard's record checksums computed in C: import this before writing or reading event files.

Every record of an event file carries the masked CRC-32C of its length and of its data. Without TensorFlow,
TensorBoard (and torch.utils.tensorboard, which writes through it) computes them in its pure-Python stub
(tensorboard.compat.tensorflow_stub.pywrap_tensorflow), one Python loop iteration per byte: about 0.25 ms
for the 2 KB event of one measured step, taken on the training thread's GIL, and most of a report's time
reading the runs' files back (tensorflow/tensorboard#4023; tensorboardX uses a C CRC for the same reason,
lanpa/tensorboardX#428). google-crc32c computes the same checksum in C; this module puts it in place of
the stub's, for writing and reading alike. Where google-crc32c has no compiled extension (it then falls back
to pure Python) the stub's function stays.
"""

from __future__ import annotations

import google_crc32c
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer import record_writer

MASK_DELTA = 0xA282EAD8  # TFRecord's mask: rotate right by 15 bits, add this (tensorflow/core/lib/hash/crc32c.h)


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of `data`, as TFRecord stores it."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


if google_crc32c.implementation == "c":
    pywrap_tensorflow.masked_crc32c = masked_crc32c  # the reader's checks
    record_writer.masked_crc32c = masked_crc32c  # the writer's (it imported the stub's by name)
