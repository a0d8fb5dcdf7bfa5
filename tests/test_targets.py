import math

import pytest

from vgbench.errors import ConfigError
from vgbench.targets import Target, TargetTracker, parse_target, run_targets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train_acc:0.9", Target("train_acc", ">=", 0.9)),  # an accuracy is met from below
        ("val_loss:0.1", Target("val_loss", "<=", 0.1)),  # a loss from above
        ("train_loss < 0.05", Target("train_loss", "<", 0.05)),
        ("val_acc>0.5", Target("val_acc", ">", 0.5)),
        ("train_acc>=1e-1", Target("train_acc", ">=", 0.1)),
    ],
)
def test_conditions_parse(text, expected):
    assert parse_target("trainer.stop_at", text, "val") == expected


def test_a_condition_is_written_out_with_its_operator():
    assert str(parse_target("k", "train_acc:0.9", "val")) == "train_acc>=0.9"
    assert str(parse_target("k", "val_loss:0.125", "val")) == "val_loss<=0.125"


@pytest.mark.parametrize(
    ("text", "held_out", "message"),
    [
        ("train_acc=0.9", "val", r"^trainer.stop_at='train_acc=0.9' is not a condition; write <metric>:<number>"),
        ("accuracy:0.9", "val", r"'accuracy' is not a metric a target can use; choose one of train_loss, train_acc"),
        ("test_acc:0.9", "val", r"the test split is evaluated once, after training; set data.val_size=0"),
        ("val_acc:0.9", "test", r"data.val_size=0 evaluates on the test split.*test_loss, test_acc$"),
        ("train_acc:nan", "val", r"'nan' is not a finite number"),
        ("train_acc:high", "val", r"'high' is not a finite number"),
        (0.9, "val", r"is not a condition"),
    ],
)
def test_bad_conditions_are_one_line_naming_the_value_and_the_choices(text, held_out, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_target("trainer.stop_at", text, held_out)
    assert "\n" not in str(error.value)


def test_the_stop_condition_is_recorded_as_a_target_once():
    targets, stop = run_targets(["train_acc:0.8", "val_loss:0.3"], "train_acc>=0.8", "auto")
    assert stop == Target("train_acc", ">=", 0.8)
    assert [str(t) for t in targets] == ["train_acc>=0.8", "val_loss<=0.3"]
    targets, stop = run_targets([], "test_acc:0.95", 0)  # data.val_size=0: the held-out split is the test split
    assert [str(t) for t in targets] == ["test_acc>=0.95"] and stop is targets[0]


def test_the_tracker_keeps_the_first_step_each_target_held():
    targets, stop = run_targets(["train_acc:0.5", "train_loss:0.2"], "train_acc:0.9", "auto")
    tracker = TargetTracker(targets, stop)
    checks = [(0.3, 1.0), (0.6, 0.5), (0.4, 0.3), (0.92, 0.1)]  # (accuracy, loss) at steps 10, 20, 30, 40
    stops = [
        tracker.update({"train_acc": acc, "train_loss": loss}, 10 * (i + 1), 1, float(i))
        for i, (acc, loss) in enumerate(checks)
    ]
    assert stops == [False, False, False, True]
    assert tracker.reached["train_acc>=0.5"] == {"step": 20, "epoch": 1, "seconds": 1.0, "value": 0.6}  # not 40
    assert tracker.reached["train_loss<=0.2"]["step"] == 40
    assert tracker.reached["train_acc>=0.9"]["value"] == 0.92


def test_a_metric_that_is_not_finite_or_not_read_meets_nothing():
    tracker = TargetTracker(*run_targets(["train_loss:0.5", "val_acc:0.1"], None, "auto"))
    assert not tracker.update({"train_loss": math.nan}, 5, 1, 0.0)
    assert not tracker.update({"train_loss": -math.inf}, 6, 1, 0.0)  # a diverged loss is not a met target
    assert tracker.reached == {"train_loss<=0.5": None, "val_acc>=0.1": None}


def test_a_resumed_tracker_keeps_what_its_checkpoint_recorded():
    reached = {"train_acc>=0.5": {"step": 7, "epoch": 1, "seconds": 0.5, "value": 0.55}}
    tracker = TargetTracker(*run_targets(["train_acc:0.5", "train_acc:0.7"], None, "auto"), reached)
    tracker.update({"train_acc": 0.8}, 30, 3, 9.0)
    assert tracker.reached["train_acc>=0.5"]["step"] == 7 and tracker.reached["train_acc>=0.7"]["step"] == 30
