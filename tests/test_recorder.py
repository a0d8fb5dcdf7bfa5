"""Where a run's measurements go (vgbench.recorder): the tables, the profiles, TensorBoard, a resume."""

import csv

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.test_series import measurement
from vgbench.recorder import Recorder


def test_the_first_measurement_is_step0_and_the_last_is_final(tmp_path):
    recorder = Recorder(tmp_path, 3, tensorboard=False, resumed_state=None, resume_step=None)
    recorder.measurement(measurement(step=0), epoch=1)
    recorder.measurement(measurement(step=5), epoch=1)
    assert recorder.profiles["step0"]["step"] == 0 and recorder.profiles["final"]["step"] == 5
    assert recorder.ratio("first_to_last_grad_ratio", "step0") == 0.25
    recorder.epoch_end(5, {"train_loss": 1.0}, lr=0.1)
    assert [row["step"] for row in csv.DictReader((tmp_path / "steps.csv").open())] == ["0", "5"]
    assert Recorder(tmp_path / "other", 3, False, None, None).ratio("first_to_last_grad_ratio", "final") is None


def test_a_resumed_recorder_continues_the_same_tables_and_profiles(tmp_path):
    straight = Recorder(tmp_path / "straight", 3, False, None, None)
    for step in (0, 5, 9):
        straight.measurement(measurement(step=step), epoch=1 + step // 5)
    first = Recorder(tmp_path / "resumed", 3, False, None, None)
    for step in (0, 5):
        first.measurement(measurement(step=step), epoch=1 + step // 5)
    resumed = Recorder(tmp_path / "resumed", 3, False, first.state(), resume_step=6)
    resumed.measurement(measurement(step=9), epoch=2)
    assert resumed.state() == straight.state()


def test_with_tensorboard_each_measurement_is_a_scalar_at_its_step(tmp_path):
    recorder = Recorder(tmp_path, 3, tensorboard=True, resumed_state=None, resume_step=None)
    recorder.measurement(measurement(step=0), epoch=1)
    recorder.measurement(measurement(step=5), epoch=1)
    recorder.epoch_end(5, {"train_loss": 1.0}, lr=0.1)
    recorder.finish({"status": "completed", "steps": 5, "final": {}, "config": {}})
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("grad_norm/total")] == [(0, 2.5), (5, 2.5)]
    assert [e.value for e in events.Scalars("delta_norm/layer_03")] == [43.0, 43.0]
    assert [e.value for e in events.Scalars("activation/std/layer_02")] == [112.0, 112.0]
    assert "activation/std/layer_03" not in events.Tags()["scalars"]  # the output layer has no activation
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(5, 1.0)]
