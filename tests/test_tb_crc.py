"""TensorBoard's record checksums in C (vgbench.tb_crc): the same numbers as its pure-Python stub."""

import os
import struct
from pathlib import Path

from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer import record_writer

from vgbench import tb_crc
from vgbench.tb_writer import TensorBoardWriter


def stub_masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C from the stub's own pure-Python CRC (pywrap_tensorflow.crc32c)."""
    crc = pywrap_tensorflow.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + tb_crc.MASK_DELTA) & 0xFFFFFFFF


def test_the_c_checksum_is_the_stubs():
    assert pywrap_tensorflow.crc32c(b"123456789") == 0xE3069283  # CRC-32C's check value (RFC 3720)
    for data in (b"", b"a", b"123456789", os.urandom(2048), bytes(range(256)) * 9):
        assert tb_crc.masked_crc32c(data) == stub_masked_crc32c(data)
    assert record_writer.masked_crc32c is tb_crc.masked_crc32c  # in place, for writing
    assert pywrap_tensorflow.masked_crc32c is tb_crc.masked_crc32c  # and reading


def test_every_record_a_run_writes_checks_out_against_the_stub(tmp_path: Path):
    writer = TensorBoardWriter(tmp_path, n_layers=3)
    writer.add_scalars({f"metric/layer_{i:02d}": i / 7 for i in range(60)}, step=3)
    writer.close()
    (events,) = tmp_path.glob("events.out.tfevents.*")
    data, records = events.read_bytes(), 0
    while data:  # uint64 length, uint32 masked crc of the length, the record, uint32 masked crc of the record
        header, (header_crc,) = data[:8], struct.unpack("<I", data[8:12])
        (length,) = struct.unpack("<Q", header)
        record, (record_crc,) = data[12 : 12 + length], struct.unpack("<I", data[12 + length : 16 + length])
        assert (header_crc, record_crc) == (stub_masked_crc32c(header), stub_masked_crc32c(record))
        data, records = data[16 + length :], records + 1
    assert records >= 3  # the file version, the custom-scalars layout, the scalars
