"""Atomic writes (vgbench.files): a reader or a crash sees the old file or the new one, never half."""

import json
import math
import os
import threading

import pytest
import torch

import vgbench.files
from vgbench.files import finite_or_none, save_torch_atomic, write_atomic, write_json_atomic, written_behind


def test_an_atomic_write_replaces_the_file_whole_with_the_usual_mode(tmp_path):
    path = tmp_path / "deep" / "summary.json"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    write_atomic(path, b"old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vgbench.files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_writes_behind_go_to_threads_and_are_whole_and_synced_when_the_block_ends(tmp_path, monkeypatch):
    synced_on, sync = [], os.fsync

    def fsync(fd):
        synced_on.append(threading.current_thread().name)
        sync(fd)

    monkeypatch.setattr(vgbench.files.os, "fsync", fsync)
    paths = [tmp_path / str(k) / "checkpoint.pt" for k in range(12)]
    with written_behind(threads=3):
        for k, path in enumerate(paths):
            write_atomic(path, bytes([k]) * 1000)
    assert [path.read_bytes() for path in paths] == [bytes([k]) * 1000 for k in range(12)]
    assert len(synced_on) == 12 and all(name.startswith("vgbench-write") for name in synced_on)
    mask = os.umask(0)
    os.umask(mask)
    assert {path.stat().st_mode & 0o777 for path in paths} == {0o666 & ~mask}
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["checkpoint.pt"]
    write_atomic(tmp_path / "after", b"x")  # outside the block: in place again
    assert synced_on[-1] == threading.current_thread().name


def test_writes_behind_wait_past_their_byte_budget_and_raise_a_failed_writes_error(tmp_path, monkeypatch):
    monkeypatch.setattr(vgbench.files, "BEHIND_BYTES", 0)  # every write waited for before the next
    with written_behind():
        write_atomic(tmp_path / "a", b"first")
        assert (tmp_path / "a").read_bytes() == b"first"
    write_atomic(tmp_path / "b", b"old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vgbench.files, "BEHIND_BYTES", 2**20)
    monkeypatch.setattr(vgbench.files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"), written_behind():
        write_atomic(tmp_path / "b", b"new")
        write_atomic(tmp_path / "c", b"new")
    assert (tmp_path / "b").read_bytes() == b"old" and not (tmp_path / "c").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary file left


def test_json_has_no_nan_so_non_finite_numbers_become_null(tmp_path):
    value = {"loss": math.nan, "ratios": [1.0, math.inf, (-math.inf, 2)], "name": "x", "steps": 3}
    assert finite_or_none(value) == {"loss": None, "ratios": [1.0, None, [None, 2]], "name": "x", "steps": 3}
    write_json_atomic(tmp_path / "s.json", value)
    assert json.loads((tmp_path / "s.json").read_text()) == finite_or_none(value)


def test_a_torch_object_round_trips_through_an_atomic_save(tmp_path):
    state = {"weight": torch.arange(6.0).reshape(2, 3), "epoch": 2}
    save_torch_atomic(tmp_path / "c.pt", state)
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    assert loaded["epoch"] == 2 and torch.equal(loaded["weight"], state["weight"])
