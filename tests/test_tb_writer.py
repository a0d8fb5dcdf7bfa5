"""What a run writes for TensorBoard and for people without it: event files, CSV series, summary profile."""

import csv
import json
import math
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import TINY, make_cfg
from vgbench.tb_writer import layer_tag
from vgbench.train import run

# 512 examples at batch 64: 8 steps an epoch, so 2 epochs are steps 0..15
MONITORED = [*TINY, "model.depth=3", "trainer.epochs=2", "monitor.every_n_steps=3", "monitor.histogram_every_n_steps=6"]
MEASURED = [0, 3, 6, 7, 9, 12, 15]  # every 3rd step, plus each epoch's last step (7 and 15)


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("monitored")
    return run_dir, run(make_cfg(*MONITORED), run_dir)


def test_layer_tags_are_zero_padded_to_sort():
    assert layer_tag("delta_norm", 1, 4) == "delta_norm/layer_01"
    assert layer_tag("delta_norm", 7, 101) == "delta_norm/layer_007"
    tags = [layer_tag("x", i, 12) for i in range(1, 13)]
    assert tags == sorted(tags)


def test_event_file_holds_the_tags_at_the_expected_steps(monitored_run):
    run_dir, _ = monitored_run
    accumulator = events(run_dir)
    scalars = set(accumulator.Tags()["scalars"])
    for layer in ("01", "02", "03", "04"):  # 3 hidden layers and the output layer
        for metric in ("grad_norm/weight", "grad_norm/bias", "grad_to_weight", "update_ratio", "delta_norm"):
            assert f"{metric}/layer_{layer}" in scalars
    for layer in ("01", "02", "03"):
        for metric in (
            "activation/mean",
            "activation/std",
            "activation/saturated",
            "activation/dead",
            "preactivation/std",
        ):
            assert f"{metric}/layer_{layer}" in scalars
    assert "activation/std/layer_04" not in scalars  # the output layer has no activation
    assert [e.step for e in accumulator.Scalars("grad_ratio/first_to_last")] == MEASURED
    assert [e.step for e in accumulator.Scalars("grad_norm/weight/layer_01")] == MEASURED
    assert [e.step for e in accumulator.Scalars("train/loss")] == [7, 15]  # each epoch's last step
    assert {
        "train/acc",
        "test/loss",
        "test/acc",
        "lr",
        "train/batch_loss",
        "grad_norm/total",
        "delta_ratio/first_to_last",
    } <= scalars
    assert [e.step for e in accumulator.Histograms("grad/weight/layer_01")] == [0, 6, 12]
    assert "activation/layer_03" in accumulator.Tags()["histograms"]
    assert [e.step for e in accumulator.Images("gradient_profile")] == [7, 15]
    assert [e.step for e in accumulator.Scalars("hparams/test_acc")] == [16]  # after every step
    assert "custom_scalars__config__" in accumulator.Tags()["tensors"]
    hparams = accumulator.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(hparams)
    assert list(run_dir.glob("*/events.out.tfevents.*")) == []  # no add_hparams subfolder


def test_scalars_equal_the_csv_series_and_the_summary(monitored_run):
    run_dir, summary = monitored_run
    accumulator = events(run_dir)
    rows = list(csv.DictReader((run_dir / "layers.csv").open()))
    assert len(rows) == len(MEASURED) * 4
    first_layer = [float(r["grad_norm/weight"]) for r in rows if r["layer"] == "1"]
    assert [e.value for e in accumulator.Scalars("grad_norm/weight/layer_01")] == pytest.approx(first_layer, rel=1e-6)
    assert [r["activation/std"] for r in rows if r["kind"] == "output"] == [""] * len(MEASURED)
    steps = list(csv.DictReader((run_dir / "steps.csv").open()))
    assert [int(r["step"]) for r in steps] == MEASURED
    assert [int(r["epoch"]) for r in steps] == [1, 1, 1, 1, 2, 2, 2]
    step0 = summary["profile"]["step0"]
    assert step0["step"] == 0 and summary["profile"]["final"]["step"] == 15
    assert step0["layers"]["grad_norm/weight"][0] == pytest.approx(first_layer[0], rel=1e-6)
    assert summary["first_to_last_grad_ratio"]["step0"] == pytest.approx(float(steps[0]["first_to_last_grad_ratio"]))
    assert (
        json.loads((run_dir / "summary.json").read_text())["profile"]["final"]["layers"].keys()
        == step0["layers"].keys()
    )


def test_the_hparams_row_has_the_step_of_each_target(monitored_run):
    """The default target (trainer.targets) is met in this run: its HParams metric is the summary's step."""
    run_dir, summary = monitored_run
    (target, reached), *_ = summary["targets"].items()
    assert target == "train_acc>=0.8" and 0 < reached["step"] <= 16
    assert [e.value for e in events(run_dir).Scalars(f"hparams/steps_to/{target}")] == [reached["step"]]


def test_tensorboard_off_still_feeds_the_summary(tmp_path):
    summary = run(make_cfg(*MONITORED, "logger.tensorboard=false"), tmp_path)
    assert list(tmp_path.glob("events.out.tfevents.*")) == []
    assert summary["first_to_last_grad_ratio"]["step0"] > 0
    assert (tmp_path / "layers.csv").exists()


def test_monitor_off_writes_no_profile(tmp_path):
    summary = run(make_cfg(*MONITORED, "monitor.enabled=false"), tmp_path)
    assert summary["profile"] == {} and summary["first_to_last_grad_ratio"] == {"step0": None, "final": None}


@pytest.mark.slow
def test_resumed_run_continues_the_series_without_duplicates(tmp_path):
    straight = run(make_cfg(*MONITORED), tmp_path / "straight")
    run(make_cfg(*MONITORED[:-3], "trainer.epochs=1", *MONITORED[-2:]), tmp_path / "resumed")
    resumed = run(make_cfg(*MONITORED, "trainer.resume=true"), tmp_path / "resumed")
    for name in ("layers.csv", "steps.csv"):
        assert (tmp_path / "resumed" / name).read_text() == (tmp_path / "straight" / name).read_text()
    assert resumed["profile"] == straight["profile"]
    accumulator, reference = events(tmp_path / "resumed"), events(tmp_path / "straight")
    assert [e.step for e in accumulator.Scalars("grad_ratio/first_to_last")] == MEASURED
    # the first attempt's epoch-end scalars and image survive the resume; its HParams entry does not
    for tag in ("train/loss", "train/acc", "test/loss", "test/acc", "lr"):
        assert [(e.step, e.value) for e in accumulator.Scalars(tag)] == [
            (e.step, e.value) for e in reference.Scalars(tag)
        ], tag
    assert [e.step for e in accumulator.Images("gradient_profile")] == [7, 15]
    assert [e.step for e in accumulator.Scalars("hparams/test_acc")] == [16]  # one HParams row, not two


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"},
    )
    return json.load(urllib.request.urlopen(request, timeout=10))


@pytest.mark.slow
def test_real_tensorboard_serves_scalars_and_hparams(monitored_run, tmp_path):
    """Start `tensorboard --logdir` on a free loopback port and ask its HTTP API, as the browser would: a
    run and a resumed run, one HParams row each, and the resumed run's first epoch still there."""
    shutil.copytree(monitored_run[0], tmp_path / "monitored")
    run(make_cfg(*MONITORED[:-3], "trainer.epochs=1", *MONITORED[-2:]), tmp_path / "resumed")
    run(make_cfg(*MONITORED, "trainer.resume=true"), tmp_path / "resumed")
    run_dir = tmp_path / "monitored"
    port = free_port()
    tensorboard = Path(sys.executable).parent / "tensorboard"
    server = subprocess.Popen(
        [tensorboard, "--logdir", str(tmp_path), "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                tags = json.load(urllib.request.urlopen(f"{base}/data/plugin/scalars/tags", timeout=5))
                if tags.get("monitored") and tags.get("resumed"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "tensorboard did not come up within 90 s"
            time.sleep(1)
        assert "grad_norm/weight/layer_01" in tags[run_dir.name]
        assert "grad_ratio/first_to_last" in tags[run_dir.name]
        experiment = post(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        assert {h["name"] for h in experiment["hparamInfos"]} == {
            "activation",
            "depth",
            "width",
            "init",
            "optimizer",
            "lr",
            "loss",
            "seed",
        }
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"hparams/first_to_last_grad_ratio_step0", "hparams/first_to_last_delta_ratio_step0"} <= metrics
        groups = post(
            f"{base}/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 100,
            },
        )["sessionGroups"]
        assert sorted(g["name"] for g in groups) == ["monitored", "resumed"]
        assert [len(g["sessions"]) for g in groups] == [1, 1]
        url = f"{base}/data/plugin/scalars/scalars?tag=train/loss&run=resumed"
        while len(losses := json.load(urllib.request.urlopen(url))) < 2 and time.monotonic() < deadline:
            time.sleep(1)  # the server may still be reading the resumed attempt's event file
        assert [step for _, step, _ in losses] == [7, 15]
    finally:
        server.terminate()
        server.wait(30)


def test_the_gradient_profile_image_draws_each_layers_orders_of_magnitude():
    import numpy as np

    from vgbench.monitor import Measurement
    from vgbench.tb_writer import BAR_COLOUR, PROFILE_MARGINS, PROFILE_SIZE, gradient_profile_image

    measurement = Measurement(
        step=7,
        layers={"grad_norm/weight": [1e-6, 1e-3, 1.0, 0.0]},
        total_grad_norm=1.0,
        first_to_last_grad_ratio=1e-6,
        first_to_last_delta_ratio=1.0,
    )
    image = np.asarray(gradient_profile_image(measurement, "epoch 1").convert("RGB"))
    assert image.shape == (PROFILE_SIZE[1], PROFILE_SIZE[0], 3) and image.dtype == np.uint8
    left, _, right, _ = PROFILE_MARGINS
    slot = (PROFILE_SIZE[0] - left - right) / 4
    heights = [int((image[:, int(left + (i + 0.5) * slot)] == BAR_COLOUR).all(axis=1).sum()) for i in range(4)]
    assert heights[2] == 0 and heights[3] == 0  # 10^0: no bar; a zero gradient: none either
    assert heights[0] == pytest.approx(2 * heights[1], abs=2)  # 6 orders of magnitude against 3


@pytest.mark.slow
def test_a_resumed_attempts_event_file_sorts_after_the_first(tmp_path):
    """TensorBoard reads a run's event files in name order; names start with the second they were made."""
    from vgbench.tb_writer import TensorBoardWriter

    names = []
    for _ in range(3):  # within the same second, as a quick resume in one process would be
        before = {p.name for p in tmp_path.glob("events.out.tfevents.*")}
        TensorBoardWriter(tmp_path, 2).close()
        [new] = {p.name for p in tmp_path.glob("events.out.tfevents.*")} - before
        names.append(new)
    assert names == sorted(names) and len(set(names)) == 3
    assert len({name.split(".")[3] for name in names}) == 3  # each in a second of its own


@pytest.mark.parametrize(
    "values",
    [
        [0.5, -1.25, 3.0, 2.0, 2.0, 7.5],
        [0.0] * 10,  # a dead layer's activations: one value
        [42.0],
        [1e-9, 2e-9, 1e6],  # the upper bins only: the empty ones between stay, those after the last go
    ],
)
def test_a_histogram_is_tensorboards_own(values):
    """vgbench.tb_writer.histogram (without numpy's dot, which starts OpenBLAS's spinning threads) against
    torch.utils.tensorboard's: the same bins, counts, extremes and sums."""
    import torch
    from torch.utils.tensorboard.summary import histogram as tensorboards

    from vgbench.tb_writer import histogram

    tensor = torch.tensor(values) * torch.randn(1).exp()  # float32, as the monitor's values are
    ours, theirs = histogram("h", tensor, 64).value[0].histo, tensorboards("h", tensor, 64).value[0].histo
    assert list(ours.bucket) == list(theirs.bucket) and list(ours.bucket_limit) == list(theirs.bucket_limit)
    assert (ours.min, ours.max, ours.num) == (theirs.min, theirs.max, theirs.num)
    assert ours.sum == pytest.approx(theirs.sum, rel=1e-12) and ours.sum_squares == pytest.approx(theirs.sum_squares)
    assert sum(ours.bucket) == len(values)


def test_histograms_of_an_exploding_run_keep_their_finite_values(tmp_path):
    """A run whose gradients overflow (a deep ReLU stack with skips) writes the finite part of each histogram
    and skips a histogram with none, instead of failing the run."""
    import torch

    from vgbench.monitor import Measurement
    from vgbench.tb_writer import TensorBoardWriter

    writer = TensorBoardWriter(tmp_path, n_layers=2)
    values = [torch.tensor([1.0, float("inf"), 3.0, float("nan")]), torch.tensor([float("inf"), float("nan")])]
    writer.measurement(Measurement(0, {}, math.inf, math.inf, math.nan, histograms={"grad/weight": values}))
    writer.close()
    histograms = events(tmp_path).Tags()["histograms"]
    assert histograms == ["grad/weight/layer_01"]
    (kept,) = events(tmp_path).Histograms("grad/weight/layer_01")
    assert (kept.histogram_value.num, kept.histogram_value.min, kept.histogram_value.max) == (2, 1.0, 3.0)


def test_the_theory_text_states_prediction_measurement_and_the_mean_field_limit(tmp_path):
    """The Text tab's theory table for a stream with skips: the Monte Carlo's ratio, the limit beside it, and
    measured / predicted; each layer's row."""
    from vgbench import theory
    from vgbench.activations import build_activation
    from vgbench.tb_writer import TensorBoardWriter

    relu = build_activation("relu")
    sizes = [20, *[32] * 4, 3]
    prediction = theory.predict_from_variances(relu, [(2.0, 0.0)] * 5, 1.0, sizes, theory.Options(residual=True))
    measured = [2 * d for d in prediction["delta_profile"][:-1]] + [prediction["delta_profile"][-1]]
    writer = TensorBoardWriter(tmp_path, 5)
    writer.theory(theory.compare(prediction, measured))
    writer.close()
    accumulator = events(tmp_path)
    [tag] = [tag for tag in accumulator.Tags()["tensors"] if tag.startswith("theory")]
    [event] = accumulator.Tensors(tag)
    body = event.tensor_proto.string_val[0].decode()
    assert f"predicted {prediction['delta_ratio']:.3e} (Monte Carlo at this width" in body
    assert f"the mean-field limit {prediction['mean_field_delta_ratio']:.3e}" in body
    assert "(2.00x)" in body and body.count("\n| ") == 6  # the header's separator row and 5 layers


def test_scalars_go_into_a_users_own_summary_writer(tmp_path):
    """Given a user's SummaryWriter (vgbench.watch's `writer`), the hand-encoded scalars go through its own file
    writer as protobufs, and read back as written; the writer stays open for its owner."""
    from torch.utils.tensorboard import SummaryWriter

    from vgbench.tb_writer import TensorBoardWriter

    users = SummaryWriter(str(tmp_path))
    writer = TensorBoardWriter(tmp_path, n_layers=2, writer=users)
    writer.add_scalars({"grad_norm/weight/layer_01": 0.125, "lr": 0.5}, step=7)
    writer.close()
    users.add_scalar("mine", 3.0, 8)  # still open
    users.close()
    accumulator = events(tmp_path)
    assert [(e.step, e.value) for e in accumulator.Scalars("grad_norm/weight/layer_01")] == [(7, 0.125)]
    assert [(e.step, e.value) for e in accumulator.Scalars("lr")] == [(7, 0.5)]
    assert [(e.step, e.value) for e in accumulator.Scalars("mine")] == [(8, 3.0)]


def test_the_gradient_profile_reaches_tensorboard_as_the_image_drawn(tmp_path):
    """The epoch's profile goes to the Images tab as a PNG that decodes to the very pixels drawn."""
    import io

    import numpy as np
    from PIL import Image

    from vgbench.monitor import Measurement
    from vgbench.tb_writer import BAR_COLOUR, TensorBoardWriter, gradient_profile_image

    norms = {"grad_norm/weight": [1e-5, 1e-2, 0.5]}
    profile = Measurement(9, norms, total_grad_norm=1.0, first_to_last_grad_ratio=2e-5, first_to_last_delta_ratio=1.0)
    writer = TensorBoardWriter(tmp_path, n_layers=3)
    writer.epoch_end(9, {"epoch": 2, "train_loss": 0.5}, 0.1, profile)
    writer.close()
    [event] = events(tmp_path).Images("gradient_profile")
    decoded = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
    drawn = np.asarray(gradient_profile_image(profile, "epoch 2, step 9").convert("RGB"))
    assert event.step == 9 and (event.width, event.height) == (drawn.shape[1], drawn.shape[0])
    assert np.array_equal(decoded, drawn) and (drawn == BAR_COLOUR).all(axis=2).sum() > 1000
