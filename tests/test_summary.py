"""The summary's layout and the failed-attempt rule (vgbench.summary): nothing finished is overwritten."""

import json

import pytest

from vgbench.summary import (
    FAILED_ATTEMPT_FILE,
    SUMMARY_FILE,
    read_summary,
    record_failure,
    write_summary,
)


def test_a_summary_round_trips(tmp_path):
    path = write_summary(tmp_path, {"status": "completed", "final": {"test_acc": 0.9, "test_loss": float("nan")}})
    assert path == tmp_path / SUMMARY_FILE
    assert read_summary(path) == {"status": "completed", "final": {"test_acc": 0.9, "test_loss": None}}


def test_a_summary_that_is_not_json_is_an_error_naming_the_file(tmp_path):
    (tmp_path / SUMMARY_FILE).write_text("{ half")
    with pytest.raises(ValueError, match=f"{tmp_path / SUMMARY_FILE} is not a readable summary"):
        read_summary(tmp_path / SUMMARY_FILE)


@pytest.mark.parametrize("status", ["completed", "diverged"])
def test_a_failure_never_overwrites_a_finished_run(tmp_path, status):
    write_summary(tmp_path, {"status": status})
    before = (tmp_path / SUMMARY_FILE).read_bytes()
    path = record_failure(tmp_path, "data.root=/x is a file", {"loss": "mse"})
    assert path == tmp_path / FAILED_ATTEMPT_FILE and (tmp_path / SUMMARY_FILE).read_bytes() == before
    assert json.loads(path.read_text()) == {
        "status": "failed",
        "error": "data.root=/x is a file",
        "config": {"loss": "mse"},
    }


def test_a_failure_replaces_a_failure_and_keeps_off_an_unreadable_summary(tmp_path):
    record_failure(tmp_path, "first", {})
    assert record_failure(tmp_path, "second", {}) == tmp_path / SUMMARY_FILE
    assert read_summary(tmp_path / SUMMARY_FILE)["error"] == "second"
    (tmp_path / SUMMARY_FILE).write_text("not json")
    assert record_failure(tmp_path, "third", {}) == tmp_path / FAILED_ATTEMPT_FILE
    assert (tmp_path / SUMMARY_FILE).read_text() == "not json"
