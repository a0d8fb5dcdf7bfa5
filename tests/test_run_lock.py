"""One process per run folder (vgbench.run_lock): an flock on the folder itself. The kill -9 case is in
test_faults.py (case 3)."""

import pytest

from vgbench.run_lock import RunFolderBusy, RunLock, held_elsewhere


def test_a_held_folder_refuses_a_second_holder_until_released_and_no_file_is_made(tmp_path):
    folder = tmp_path / "run"
    first = RunLock(folder)
    first.acquire()  # makes the folder
    assert folder.is_dir() and held_elsewhere(folder)
    with pytest.raises(RunFolderBusy, match=f"{folder} is held by another process"):
        RunLock(folder).acquire()
    first.release()
    assert not held_elsewhere(folder)
    second = RunLock(folder)
    second.acquire()
    second.release()
    assert list(folder.iterdir()) == []


def test_a_probe_neither_makes_the_folder_nor_holds_it(tmp_path):
    assert not held_elsewhere(tmp_path / "missing") and not (tmp_path / "missing").exists()
    (tmp_path / "file").write_text("")
    lock = RunLock(tmp_path / "file")  # a file is not held: inspect_run_folder reports it
    lock.acquire()
    assert lock.fd is None
