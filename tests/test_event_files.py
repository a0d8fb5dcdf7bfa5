"""TensorBoard event files written directly (vgbench.event_files): checksums in C, the same as the stub's;
files that TensorBoard reads back as it reads SummaryWriter's."""

import math
import os
import struct
from pathlib import Path

import pytest
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer import record_writer

from vgbench import event_files
from vgbench.tb_writer import TensorBoardWriter


def stub_masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C from the stub's own pure-Python CRC (pywrap_tensorflow.crc32c)."""
    crc = pywrap_tensorflow.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + event_files.MASK_DELTA) & 0xFFFFFFFF


def test_the_c_checksum_is_the_stubs():
    assert pywrap_tensorflow.crc32c(b"123456789") == 0xE3069283  # CRC-32C's check value (RFC 3720)
    for data in (b"", b"a", b"123456789", os.urandom(2048), bytes(range(256)) * 9):
        assert event_files.masked_crc32c(data) == stub_masked_crc32c(data)
    assert record_writer.masked_crc32c is event_files.masked_crc32c  # in place, for writing
    assert pywrap_tensorflow.masked_crc32c is event_files.masked_crc32c  # and reading


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


def test_a_purge_step_drops_what_the_earlier_file_holds_from_that_step_on(tmp_path: Path):
    """A resumed run's file, as TensorBoard's own reader sees it beside the interrupted attempt's: the
    values the attempt wrote from the purge step on are gone, the earlier ones kept (SummaryWriter's
    purge_step does the same)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = event_files.EventFile(tmp_path)
    for step in range(10):
        first.add_summary(Summary(value=[Summary.Value(tag="loss", simple_value=float(step))]), step)
    first.close()
    resumed = event_files.EventFile(tmp_path, purge_step=6)
    for step in range(6, 8):
        resumed.add_summary(Summary(value=[Summary.Value(tag="loss", simple_value=100.0 + step)]), step)
    resumed.close()
    names = [f.path.name.split(".") for f in (first, resumed)]  # events.out.tfevents.<seconds>.<host>.<pid>.<n>
    assert [n[:3] for n in names] == [["events", "out", "tfevents"]] * 2 and names[0] != names[1]
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert [(e.step, e.value) for e in accumulator.Scalars("loss")] == [
        *((s, float(s)) for s in range(6)),
        (6, 106.0),
        (7, 107.0),
    ]


def test_events_reach_the_disk_within_the_flush_interval(tmp_path: Path):
    """Buffered, but a TensorBoard watching the run sees each event at most flush_seconds late."""
    buffered, prompt = event_files.EventFile(tmp_path / "a"), event_files.EventFile(tmp_path / "b", flush_seconds=0)
    for events in (buffered, prompt):
        events.add_summary(Summary(value=[Summary.Value(tag="loss", simple_value=1.0)]), 1)
    assert buffered.path.stat().st_size == 0  # still in the buffer: 30 s have not passed
    assert prompt.path.stat().st_size > 0  # the file version and the event, on disk
    buffered.close()
    assert buffered.path.stat().st_size == prompt.path.stat().st_size
    prompt.close()


@pytest.mark.parametrize(
    "values",
    [
        {"loss": 0.25},
        {f"grad_norm/weight/layer_{i:02d}": 1.5**i - 7 for i in range(60)} | {"lr": 0.1},
        {"zero": 0.0, "minus_zero": -0.0, "tiny": 1e-45, "huge": 3e38, "inf": math.inf, "-inf": -math.inf},
        {"t" * 300: 1.0, "é/ü": 2.0, "": 3.0},  # a tag past one varint byte, UTF-8, empty
        {"int": 3, "beyond float32": 1e40, "below": -1e40},
    ],
)
def test_a_scalar_summary_is_the_bytes_protobuf_makes(values):
    expected = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()])
    encoder = event_files.ScalarSummary()
    assert encoder.encode(values) == expected.SerializeToString()
    assert encoder.encode(values) == expected.SerializeToString()  # the second time from the kept layout
    changed = {tag: value * 2 + 1 for tag, value in values.items()}
    again = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in changed.items()])
    assert encoder.encode(changed) == again.SerializeToString()


def test_a_nan_scalar_reads_back_as_nan():
    (value,) = Summary.FromString(event_files.ScalarSummary().encode({"loss": math.nan})).value
    assert value.tag == "loss" and math.isnan(value.simple_value)


@pytest.mark.parametrize("step", [0, 1, 127, 128, 300_000, 2**40])
def test_a_summary_event_in_wire_format_is_the_event_protobuf_makes(tmp_path, monkeypatch, step):
    """EventFile.add_summary_bytes frames the same record as add_summary: wall time, step (left out at 0,
    as protobuf leaves out a default) and summary."""
    monkeypatch.setattr(event_files.time, "time", lambda: 1764790000.125)
    summary = Summary(value=[Summary.Value(tag="loss", simple_value=0.5), Summary.Value(tag="acc", simple_value=1)])
    by_hand, by_protobuf = event_files.EventFile(tmp_path / "a"), event_files.EventFile(tmp_path / "b")
    by_hand.add_summary_bytes(summary.SerializeToString(), step)
    by_protobuf.add_summary(summary, step)
    by_hand.close()
    by_protobuf.close()
    assert by_hand.path.read_bytes() == by_protobuf.path.read_bytes()
