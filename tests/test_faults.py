"""Faults a user or a cluster causes (issue 24), one test per case, named by case: bad input is one line and
exit code 2; a fault leaves every file that existed before unchanged and the sweep's other runs finish.
docs/faults.md lists every case and what vgbench does with it."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, TINY, make_cfg, run_app
from tests.test_provision import fake_mnist, no_routes, write_files  # noqa: F401 - no_routes is a fixture
from vgbench import provision as prov
from vgbench.config import RUN_FOLDER_BYTES, run_folder_name
from vgbench.errors import ConfigError, UserError
from vgbench.jobs import train_jobs
from vgbench.provision import FILES, ProvisionError
from vgbench.report import main as report_main
from vgbench.report.render import markdown
from vgbench.run_lock import RunFolderBusy, RunLock
from vgbench.summary import FAILED_ATTEMPT_FILE, SUMMARY_FILE
from vgbench.tb_writer import TensorBoardWriter
from vgbench.train import run
from vgbench.validate import validate


def snapshot(folder):
    """Every file under `folder` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_exit_2(result):
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


# --- 4. a malformed summary.json ---


@pytest.mark.parametrize("damage", ["list", "folder", "deep"])
def test_case_4_a_malformed_summary_is_one_line_and_left_as_it_was(tmp_path, damage):
    summary = tmp_path / SUMMARY_FILE
    if damage == "folder":
        summary.mkdir()
    else:
        summary.write_text("[]" if damage == "list" else "[" * 100_000 + "]" * 100_000)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=f"{summary} is not a readable summary"):
        run(make_cfg(*TINY), tmp_path)
    assert snapshot(tmp_path) == before


def test_case_4_in_a_stack_the_malformed_summary_fails_its_run_alone(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / SUMMARY_FILE).write_text("[]")
    results = train_jobs([make_cfg(*TINY), make_cfg(*TINY, "trainer.seed=1")], [tmp_path / "bad", tmp_path / "good"])
    assert [r.status for r in results] == ["failed", "completed"]
    assert (tmp_path / "bad" / SUMMARY_FILE).read_text() == "[]"  # not overwritten: the attempt is beside it
    assert json.loads((tmp_path / "bad" / FAILED_ATTEMPT_FILE).read_text())["status"] == "failed"


# --- 5. a value of the wrong type ---


VAL_SIZE_ERROR = "data.val_size='abc' is not valid; use 'auto' or an int >= 0"


def test_case_5_val_size_that_is_not_a_number_is_one_line():
    with pytest.raises(ConfigError) as error:
        validate(make_cfg("data.val_size=abc"))
    assert str(error.value) == VAL_SIZE_ERROR


@pytest.mark.slow
def test_case_5_through_the_command_line_it_is_one_line_and_exit_2(tmp_path):
    stderr = one_line_exit_2(run_app(*TINY, "data.val_size=abc", f"hydra.run.dir={tmp_path / 'run'}"))
    assert stderr == f"error: {VAL_SIZE_ERROR}\n"


# --- 7. a future-dated TensorBoard file ---


@pytest.mark.slow
def test_case_7_a_future_dated_event_file_does_not_hang_a_run(tmp_path):
    (tmp_path / "events.out.tfevents.4102444800.h.1.0").write_bytes(b"")
    started = time.monotonic()
    TensorBoardWriter(tmp_path, 2).close()
    assert time.monotonic() - started < 5  # at most a second's wait, then on


# --- 8. data folders ---


def test_case_8_a_read_only_data_folder_of_verified_files_is_used(tmp_path, monkeypatch, no_routes):  # noqa: F811
    md5 = write_files(tmp_path / "MNIST" / "raw", fake_mnist())
    monkeypatch.setitem(prov.MD5, "mnist", md5)
    real_lock = prov.FileLock

    def no_lock(path):  # what a read-only folder does to a lock taken in it
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(prov, "FileLock", no_lock)
    before = snapshot(tmp_path)
    assert prov.provision("mnist", tmp_path).source.startswith("data folder")
    assert snapshot(tmp_path) == before
    monkeypatch.setattr(prov, "FileLock", real_lock)


@pytest.mark.parametrize("damage", ["truncated", "not gzip", "wrong contents"])
def test_case_8_a_damaged_gz_is_one_error_naming_it_and_nothing_is_written(tmp_path, monkeypatch, no_routes, damage):  # noqa: F811
    arrays = fake_mnist()
    md5 = write_files(tmp_path / "MNIST" / "raw", arrays, gz=True)
    monkeypatch.setitem(prov.MD5, "mnist", md5)
    packed = tmp_path / "MNIST" / "raw" / f"{FILES[0]}.gz"
    data = packed.read_bytes()
    packed.write_bytes(
        {"truncated": data[: len(data) // 2], "not gzip": b"plain bytes", "wrong contents": gzip.compress(b"x" * 100)}[
            damage
        ]
    )
    before = snapshot(tmp_path)
    expected = "unpacks to MD5" if damage == "wrong contents" else "is truncated or corrupt"
    with pytest.raises(ProvisionError, match=f"{packed} {expected}") as error:
        prov.provision("mnist", tmp_path)
    assert "\n" not in str(error.value)
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.name.startswith(".")} == before  # the lock aside


# --- 9. the report on damaged runs ---


@pytest.mark.slow
def test_case_9_each_damaged_run_is_listed_as_unreadable_and_the_report_covers_the_others(tmp_path, capsys):
    for name in ("good", "bad_yaml", "bad_csv", "list_summary", "deep_summary"):
        run(make_cfg(*TINY, "trainer.epochs=1"), tmp_path / name)
    (tmp_path / "bad_yaml" / ".hydra").mkdir()
    (tmp_path / "bad_yaml" / ".hydra" / "overrides.yaml").write_text("- a: [unclosed\n")
    (tmp_path / "bad_csv" / "layers.csv").write_text("step,layer\n" + '"' + "x" * 200_000 + '",1\n')
    (tmp_path / "list_summary" / SUMMARY_FILE).write_text("[]")
    (tmp_path / "deep_summary" / SUMMARY_FILE).write_text("[" * 100_000 + "]" * 100_000)
    report_main([str(tmp_path)])
    report = (tmp_path / "report.md").read_text()
    for name in ("bad_yaml", "bad_csv", "list_summary", "deep_summary"):
        assert f"{name} (unreadable: " in report or f"{name}" in report.split("Failed:")[1], name
    assert "5 run(s)" in report and "4 failed" in report
    assert "report:" in capsys.readouterr().out


@pytest.mark.slow
def test_case_9_a_sweep_whose_runs_all_failed_on_num_classes_0_still_gets_a_report(tmp_path, capsys):
    results = train_jobs(
        [make_cfg(*TINY, "data.num_classes=0", f"trainer.seed={s}") for s in range(2)], [tmp_path / "a", tmp_path / "b"]
    )
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].error == "data.num_classes=0 is not valid; it must be >= 2"  # checked before any data loads
    report_main([str(tmp_path)])
    assert "2 failed" in (tmp_path / "report.md").read_text()


# --- 10. a full disk ---


def test_case_10_a_full_disk_in_the_failure_handler_is_a_line_and_the_others_go_on(tmp_path, monkeypatch, caplog):
    import vgbench.jobs

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vgbench.jobs, "record_failure", full)
    results = train_jobs([make_cfg(*TINY, "model.depth=0"), make_cfg(*TINY)], [tmp_path / "bad", tmp_path / "good"])
    assert [r.status for r in results] == ["failed", "completed"]
    assert "the failure could not be recorded in the folder (No space left on device)" in caplog.text


# --- 11. a custom activation that fails as it is imported ---


@pytest.mark.slow
def test_case_11_a_custom_activation_with_a_syntax_error_is_one_line(tmp_path):
    (tmp_path / "broken_act.py").write_text("def f(z):\n    return z +\n")
    result = run_app(
        "activation=custom", "activation.target=broken_act.f", *TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    error = one_line_exit_2(result)
    assert "activation.target='broken_act.f': importing broken_act fails with SyntaxError at line 2" in error


# --- 12. report.md escapes HTML ---


def test_case_12_report_md_escapes_html_in_every_value():
    text = markdown(
        "t",
        ["x=<img src=x onerror=alert(1)>"],
        ["<b>finding</b>"],
        [],
        [("table", ["activation"], [["<img src=x onerror=alert(1)>"]])],
        [("grid", ["activation", "depth=2"], [["<script>", "0.1"]])],
    )
    assert "<img" not in text and "<b>" not in text and "<script>" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


# --- 13. the torch floor ---


def test_case_13_torch_is_required_at_a_version_without_the_weights_only_bypass():
    from tests.conftest import REPO

    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"torch>=2.6"' in pyproject and "CVE-2025-32434" in pyproject


def test_the_fault_tests_are_named_by_case():
    names = [name for name in globals() if name.startswith("test_case_")]
    assert sorted({int(name.split("_")[2]) for name in names}) == list(range(1, 14))


# --- 1. a finished run is its identity's ---


def test_case_1_a_diverged_run_is_not_overwritten_by_another_config(tmp_path):
    diverged = run(make_cfg(*TINY, "optimizer.lr=1e12", "trainer.log_every_n_steps=1"), tmp_path)
    assert diverged["status"] == "diverged"
    before = snapshot(tmp_path)
    with pytest.raises(
        UserError,
        match=r"holds a diverged run that was written by a different config \(differs in: "
        r"optimizer.lr\)",
    ):
        run(make_cfg(*TINY, "optimizer.lr=0.1", "trainer.log_every_n_steps=1"), tmp_path)
    assert snapshot(tmp_path) == before


def test_case_1_a_failed_run_is_not_overwritten_by_another_config(tmp_path):
    train_jobs([make_cfg(*TINY, "model.depth=0")], [tmp_path])
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=r"holds a failed run that .*differs in: model.depth\)"):
        run(make_cfg(*TINY, "model.depth=2"), tmp_path)
    assert snapshot(tmp_path) == before


def test_case_1_a_completed_run_without_a_checkpoint_is_not_retrained_over(tmp_path):
    run(make_cfg(*TINY, "trainer.checkpoint=false", "trainer.epochs=1"), tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="holds a completed run of 1 epoch.* and no checkpoint to continue it from"):
        run(make_cfg(*TINY, "trainer.checkpoint=false", "trainer.epochs=2"), tmp_path)
    assert snapshot(tmp_path) == before
    again = run(make_cfg(*TINY, "trainer.checkpoint=false", "trainer.epochs=1"), tmp_path)  # the same run: skipped
    assert again["status"] == "completed" and snapshot(tmp_path) == before


# --- 6. run folder names ---


def test_case_6_a_run_folders_name_fits_stays_unique_and_stable_and_cannot_leave_the_sweep():
    short = "activation=relu,model.depth=10"
    assert run_folder_name(short) == short  # the usual names are as Hydra makes them
    long = ",".join(f"key{i}.setting=value{i}" for i in range(16)) + ",data.root=é" * 20
    a, b = run_folder_name(long), run_folder_name(long.replace("value3", "value4"))
    assert len(a.encode()) <= RUN_FOLDER_BYTES and a == run_folder_name(long) and a != b
    assert a.startswith("key0.setting=value0,key1") and "~" in a
    for hostile in ("data.root=../../etc", "model.init=/abs/path", "..", "data.root=a\\..\\b"):
        name = run_folder_name(hostile)
        assert "/" not in name and "\\" not in name and name not in (".", "..")
    assert run_folder_name("data.root=a/b") != run_folder_name("data.root=a%2Fb")  # escaping keeps them apart


@pytest.mark.slow
def test_case_6_a_stack_of_runs_with_16_overrides_trains_inside_its_sweep_folder(tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [
        "data=synthetic",
        "data.num_train=256",
        "data.num_test=64",
        "model.width=16",
        "trainer.epochs=1",
        "trainer.device=cpu",
        "activation=leaky_relu",
        "activation.params.negative_slope=0.05,0.1",
        "optimizer=momentum",
        "optimizer.momentum=0.9",
        "optimizer.nesterov=true",
        "optimizer.weight_decay=0.0001",
        "data.batch_size=32",
        "data.split_seed=3",
        "monitor.every_n_steps=7",
        "model.init=kaiming_normal",
        "model.bias_init=zeros",
        f"data.root={tmp_path}/../data",
    ]
    result = run_app("-m", *overrides, "hydra/launcher=stacked", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-2000:]
    folders = [p.parent for p in sweep.rglob("summary.json")]
    assert len(folders) == 2 and all(folder.parent == sweep for folder in folders)
    assert all(json.loads((f / "summary.json").read_text())["status"] == "completed" for f in folders)
    assert all(len(folder.name.encode()) <= RUN_FOLDER_BYTES for folder in folders)
    rerun = run_app("-m", *overrides, "hydra/launcher=stacked", f"hydra.sweep.dir={sweep}", "trainer.resume=true")
    assert rerun.returncode == 0 and rerun.stdout.count("skipped") == 2  # the same names: found and skipped


# --- 3. one process per run folder ---


@pytest.mark.slow
def test_case_3_a_run_another_process_is_training_is_skipped_and_its_folder_untouched(tmp_path, caplog):
    busy, free = tmp_path / "busy", tmp_path / "free"
    run(make_cfg(*TINY, "trainer.epochs=1"), busy)  # a checkpoint and a summary, as a run in progress has
    (busy / SUMMARY_FILE).unlink()  # in progress: no summary yet
    before = snapshot(busy)
    holder = RunLock(busy)  # another process's hold (flock conflicts across open files, in one process too)
    holder.acquire()
    try:
        results = train_jobs([make_cfg(*TINY, "trainer.epochs=2"), make_cfg(*TINY)], [busy, free])
        with pytest.raises(RunFolderBusy, match="is held by another process, which is training this run now"):
            run(make_cfg(*TINY, "trainer.epochs=2", "trainer.resume=true"), busy)
    finally:
        holder.release()
    assert [r.status for r in results] == ["skipped", "completed"]
    assert "held by another process" in results[0].error and "held by another process" in caplog.text
    assert snapshot(busy) == before  # no failed record, no summary: nothing written into a folder in use
    assert run(make_cfg(*TINY, "trainer.epochs=2", "trainer.resume=true"), busy)["epochs_done"] == 2  # released


def test_case_3_a_killed_holder_leaves_no_lock_behind(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from vgbench.run_lock import RunLock; RunLock(Path(sys.argv[1])).acquire(); "
            "print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = RunLock(tmp_path)
    lock.acquire()  # the kernel dropped the killed process's hold
    lock.release()
    assert list(tmp_path.iterdir()) == []  # the lock is on the folder: no file was made


# --- 2. a refusal leaves the folder as it was ---


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [None, "stacked"])
def test_case_2_a_refused_run_leaves_the_folder_byte_for_byte(tmp_path, launcher):
    """Hydra writes .hydra/ and train.log before the job starts; where the folder holds another run, the
    record goes nowhere and the log to the null device (vgbench.app's resolvers). The basic launcher's
    path (Hydra's run_job) is the parallel, submitit and Ray launchers' too; the stacked one is vgbench's."""
    base = [
        "data=synthetic",
        "data.num_train=256",
        "data.num_test=64",
        "model.width=16",
        "trainer.epochs=1",
        "trainer.device=cpu",
    ]
    if launcher is None:
        where = [f"hydra.run.dir={tmp_path}"]
        first = run_app(*base, "model.depth=2", *where)
        folder = tmp_path
    else:
        where = [f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=the_run"]
        base = ["-m", *base]
        first = run_app(*base, "model.depth=2", *where)
        folder = tmp_path / "the_run"
    assert first.returncode == 0, first.stderr[-2000:]
    assert (folder / ".hydra" / "overrides.yaml").exists() and (folder / "train.log").stat().st_size > 0
    before = snapshot(folder)
    refused = run_app(*base, "model.depth=4", *where)
    if launcher is None:
        assert "holds a completed run that was written by a different config (differs in: model.depth)" in (
            one_line_exit_2(refused)
        )
    else:
        assert refused.returncode == 0 and "differs in: model.depth" in refused.stdout
    assert snapshot(folder) == before  # .hydra/, train.log, summary, series: byte for byte


# --- the kill -9 drill: a stacked sweep killed mid-epoch, run again into its folder ---


@pytest.mark.slow
def test_a_stacked_sweep_killed_with_sigkill_and_run_again_matches_an_uninterrupted_one(tmp_path):
    sweep = [
        "-m",
        "data=synthetic",
        "data.num_train=4096",
        "data.num_test=256",
        "model.width=64",
        "model.depth=4",
        "trainer.epochs=3",
        "trainer.device=cpu",
        "trainer.seed=0,1,2",
        "hydra/launcher=stacked",
        "trainer.resume=true",
        "monitor.every_n_steps=20",
    ]
    straight = run_app(*sweep, f"hydra.sweep.dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "vgbench", *sweep, f"hydra.sweep.dir={killed_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while len(list(killed_dir.glob("*/checkpoint.pt"))) < 3:  # every run has finished an epoch
        assert process.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and its stack's worker, mid-epoch
    process.wait()
    assert len(list(killed_dir.glob("*/summary.json"))) < 3  # killed while training, not after
    again = run_app(*sweep, f"hydra.sweep.dir={killed_dir}")
    assert again.returncode == 0, again.stderr[-2000:]
    for path in (tmp_path / "straight").glob("*/summary.json"):
        expected, resumed = (
            json.loads(path.read_text()),
            json.loads((killed_dir / path.parent.name / "summary.json").read_text()),
        )
        for key in ("status", "history", "final", "profile", "first_to_last_grad_ratio", "epochs_done", "steps"):
            assert resumed[key] == expected[key], (path.parent.name, key)  # bit for bit, through JSON
        assert (killed_dir / path.parent.name / "layers.csv").read_bytes() == (path.parent / "layers.csv").read_bytes()
