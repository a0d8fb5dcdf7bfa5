"""TensorBoard output of a run: I/O only. It is fed the monitor's measurements and the loop's metrics.

Tags: `<metric>/layer_NN` per layer (zero-padded so they sort), `grad_ratio/first_to_last`,
`delta_ratio/first_to_last`, `grad_norm/total`, `train/*`, `val/*` or `test/*`, `lr`; a custom-scalars
layout with one multi-line chart per metric (all layers together); histograms of weight gradients and
activations; a bar chart of the gradient norm per layer at each epoch end; and one HParams entry per run,
written into the run's own folder so `tensorboard --logdir <sweep folder>` compares every run of a sweep
in one table.

Steps: a measurement is logged at the step it measured (0 is the initialised model); an epoch's metrics
at the epoch's last step; the HParams entry at the run's step count, after every step. A resumed run
opens the writer with `purge_step` = its step count, which drops whatever an interrupted attempt wrote
after its last checkpoint, and the HParams entry of the attempt it extends, but keeps the epoch metrics
the checkpoint covers.
"""

from __future__ import annotations

import functools
import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
from torch.utils.tensorboard.summary import custom_scalars, text
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from vgbench.event_files import EventFile, ScalarSummary
from vgbench.monitor import HIDDEN_METRICS, LAYER_METRICS, Measurement

# The HParams table: columns from the config, metrics from the summary (key paths in summary.json)
HPARAM_COLUMNS = {
    "activation": "activation.name",
    "depth": "model.depth",
    "width": "model.width",
    "init": "model.init",
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "loss": "loss",
    "seed": "trainer.seed",
}
HPARAM_METRICS = {
    "hparams/test_acc": "final.test_acc",
    "hparams/train_loss": "final.train_loss",
    "hparams/first_to_last_grad_ratio_step0": "first_to_last_grad_ratio.step0",
    "hparams/first_to_last_grad_ratio_final": "first_to_last_grad_ratio.final",
    "hparams/first_to_last_delta_ratio_step0": "first_to_last_delta_ratio.step0",
}


def hparam_metrics(summary: dict[str, Any]) -> dict[str, float | None]:
    """A run's HParams metrics from its summary: HPARAM_METRICS, and for each of its targets
    (vgbench.targets) `hparams/steps_to/<target>`, the step at which it first held (None: never)."""
    metrics = {tag: lookup(summary, path) for tag, path in HPARAM_METRICS.items()}
    for target, reached in (summary.get("targets") or {}).items():
        metrics[f"hparams/steps_to/{target}"] = reached["step"] if reached else None
    return {tag: float(value) if isinstance(value, (int, float)) else None for tag, value in metrics.items()}


def hparam_columns(values: dict[str, Any]) -> dict[str, int | float | str | bool]:
    """An HParams row's columns: numbers, strings and booleans as they are, anything else as its text."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}


def lookup(tree: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def layer_tag(metric: str, layer: int, n_layers: int) -> str:
    return f"{metric}/layer_{layer:0{max(2, len(str(n_layers)))}d}"


@functools.cache
def layer_tags(metric: str, count: int, n_layers: int) -> list[str]:
    """`metric`'s tag for each of `count` layers, formatted once in a process (a measured step logs 60 or more
    in each run, and a stack's runs share them)."""
    return [layer_tag(metric, index + 1, n_layers) for index in range(count)]


# one for every writer of the process: a stack's runs log the same tags, whose layout is made once
SCALAR_SUMMARY = ScalarSummary()


def histogram(tag: str, values: torch.Tensor, bins: int) -> Summary:
    """TensorBoard's histogram of finite `values` in `bins` even bins, as torch.utils.tensorboard's
    `histogram` makes it (numpy's bins; the empty ones at either end dropped but for one on the left), with
    its sum of squares taken without numpy's dot: that starts OpenBLAS's threads, which then spin beside
    torch's, and on a 2-core machine the next training steps took 40 to 100 ms each."""
    array = values.detach().double().flatten().numpy()
    counts, limits = np.histogram(array, bins=bins)
    nonzero = np.flatnonzero(counts)
    start, end = int(nonzero[0]), int(nonzero[-1]) + 1
    counts = counts[start - 1 : end] if start > 0 else np.concatenate([[0], counts[:end]])
    limits = limits[start : end + 1]
    return Summary(
        value=[
            Summary.Value(
                tag=tag,
                histo=HistogramProto(
                    min=array.min(),
                    max=array.max(),
                    num=len(array),
                    sum=array.sum(),
                    sum_squares=np.square(array).sum(),
                    bucket_limit=limits.tolist(),
                    bucket=counts.tolist(),
                ),
            )
        ]
    )


def custom_scalars_layout() -> dict[str, dict[str, list[Any]]]:
    """One multi-line chart per metric, matching every layer's tag by regex."""
    charts = {metric: ["Multiline", [rf"^{metric}/layer_\d+$"]] for metric in (*LAYER_METRICS, *HIDDEN_METRICS)}
    return {
        "gradients by layer": {k: v for k, v in charts.items() if k in LAYER_METRICS}
        | {"first-to-last ratios": ["Multiline", [r"^(grad|delta)_ratio/first_to_last$"]]},
        "activations by layer": {k: v for k, v in charts.items() if k in HIDDEN_METRICS},
        "training": {
            "loss": ["Multiline", [r"^(train|val|test)/loss$"]],
            "accuracy": ["Multiline", [r"^(train|val|test)/acc$"]],
        },
    }


PROFILE_SIZE = (480, 260)  # width, height in pixels
PROFILE_MARGINS = (56, 28, 14, 34)  # left, top, right, bottom
BAR_COLOUR = (31, 119, 180)
WHITE, BLACK, BAR = 0, 1, 2  # the profile's palette indices
PALETTE = [255, 255, 255, 0, 0, 0, *BAR_COLOUR]


@functools.lru_cache(maxsize=8)
def _profile_background(n_layers: int) -> Image.Image:
    """What a gradient profile of `n_layers` layers shares with every other: the layers' numbers under their
    slots and the axes' titles (text is most of the drawing's time)."""
    (width, height), (left, top, right, bottom) = PROFILE_SIZE, PROFILE_MARGINS
    plot_width, plot_height = width - left - right, height - top - bottom
    image = Image.new("P", PROFILE_SIZE, WHITE)
    image.putpalette(PALETTE)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    slot = plot_width / n_layers
    for index in range(n_layers):
        if n_layers <= 20 or index % math.ceil(n_layers / 20) == 0:
            x = left + index * slot + 0.5 * slot
            draw.text((x, top + plot_height + 4), str(index + 1), fill=BLACK, font=font, anchor="mt")
    draw.text((left + plot_width / 2, height - 4), "layer (1 = next to the input)", fill=BLACK, font=font, anchor="mb")
    draw.text((4, top - 14), "log10 ||dL/dW||", fill=BLACK, font=font)
    return image


def gradient_profile_image(measurement: Measurement, title: str) -> Image.Image:
    """Bars of log10 ||dL/dW|| per layer (how many orders of magnitude each layer's gradient is below 1), as
    a palette image of three colours (PALETTE). This image is drawn at every epoch end of every run of a
    stack: drawn with Pillow rather than matplotlib, many times slower, onto a background drawn once per
    depth, and with a palette rather than RGB, whose PNG takes ten times as long to encode."""
    norms = measurement.layers["grad_norm/weight"]
    logs = [math.log10(n) if n and n > 0 and math.isfinite(n) else None for n in norms]
    finite = [v for v in logs if v is not None]
    low, high = math.floor(min([*finite, 0.0])), math.ceil(max([*finite, 0.0]))
    high = high if high > low else low + 1
    (width, height), (left, top, right, bottom) = PROFILE_SIZE, PROFILE_MARGINS
    plot_width, plot_height = width - left - right, height - top - bottom
    image = _profile_background(len(norms)).copy()
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * plot_height

    step = max(1, math.ceil((high - low) / 8))
    for tick in range(low, high + 1, step):
        draw.line([(left - 4, y(tick)), (left, y(tick))], fill=BLACK)
        draw.text((left - 8, y(tick)), str(tick), fill=BLACK, font=font, anchor="rm")
    slot = plot_width / len(norms)
    for index, value in enumerate(logs):
        x0 = left + index * slot + 0.15 * slot
        if value is not None:
            draw.rectangle([x0, min(y(0), y(value)), x0 + 0.7 * slot, max(y(0), y(value))], fill=BAR)
    draw.line([(left, y(0)), (left + plot_width, y(0))], fill=BLACK)
    draw.line([(left, top), (left, top + plot_height)], fill=BLACK)
    draw.text(
        (left + plot_width / 2, 4),
        f"{title}: first/last = {measurement.first_to_last_grad_ratio:.2e}",
        fill=BLACK,
        font=font,
        anchor="mt",
    )
    return image


def png_summary(tag: str, image: Image.Image) -> Summary:
    """An image for TensorBoard's Images tab as PNG, at zlib's fastest level (a chart's flat colours compress
    well at any level)."""
    encoded = io.BytesIO()
    image.save(encoded, format="PNG", compress_level=1)
    picture = Summary.Image(
        height=image.height, width=image.width, colorspace=3, encoded_image_string=encoded.getvalue()
    )
    return Summary(value=[Summary.Value(tag=tag, image=picture)])


def wait_for_a_later_second(log_dir: Path) -> None:
    """TensorBoard reads a run's event files in the order of their names, which begin with the second they
    were made (events.out.tfevents.<seconds>.<host>.<pid>.<n>): a resumed attempt's file made in the same
    second as the last one could sort before it (pid 1000 < 999, n 10 < 9), and its purge would then erase
    the earlier attempt instead. So a new file waits, at most a second, for a later second; a file dated
    later than that (a clock set wrong, a copied folder) cannot be waited out and is not."""
    seconds = [int(part) for p in log_dir.glob("events.out.tfevents.*") if (part := p.name.split(".")[3]).isdigit()]
    if seconds:
        time.sleep(min(1.0, max(0.0, max(seconds) + 1 - time.time())))


class TensorBoardWriter:
    def __init__(self, log_dir: Path, n_layers: int, purge_step: int | None = None, writer: Any = None) -> None:
        # purge_step: on resume, drop events an interrupted run wrote after its last checkpoint
        # writer: a user's own torch.utils.tensorboard.SummaryWriter (vgbench.watch), written into and left open
        self.writer = writer
        if writer is None:
            wait_for_a_later_second(log_dir)
            self.events = EventFile(log_dir, purge_step)  # vgbench.event_files: no thread, one open file
        else:
            self.events = writer.file_writer
        self.n_layers = n_layers
        self.events.add_summary(custom_scalars(custom_scalars_layout()), 0)

    def add_scalars(self, values: dict[str, float], step: int) -> None:
        """Many scalars in one event: one Summary and one write instead of one per tag (60+ per step), its
        bytes encoded by hand (vgbench.event_files.ScalarSummary)."""
        summary = SCALAR_SUMMARY.encode(values)
        if isinstance(self.events, EventFile):
            self.events.add_summary_bytes(summary, step)
        else:  # a user's SummaryWriter's file writer takes protobufs
            self.events.add_summary(Summary.FromString(summary), step)

    def measurement(self, measurement: Measurement) -> None:
        step = measurement.step
        scalars = {
            tag: value
            for metric, values in measurement.layers.items()
            for tag, value in zip(layer_tags(metric, len(values), self.n_layers), values, strict=True)
        }
        scalars["grad_ratio/first_to_last"] = measurement.first_to_last_grad_ratio
        scalars["delta_ratio/first_to_last"] = measurement.first_to_last_delta_ratio
        scalars["grad_norm/total"] = measurement.total_grad_norm
        self.add_scalars(scalars | measurement.extra, step)
        for kind, tensors in measurement.histograms.items():
            for index, values in enumerate(tensors):
                mask = torch.isfinite(values)  # an exploding run's inf and nan have no bin
                # masking copies every value (slow on a CPU): only where something is not finite
                finite = values if mask.all() else values[mask]
                if finite.numel():  # 64 even bins: TensorBoard's default exponential bins cost 4x as much
                    self.events.add_summary(histogram(layer_tag(kind, index + 1, self.n_layers), finite, 64), step)

    def epoch_end(self, step: int, metrics: dict[str, float], lr: float, profile: Measurement | None) -> None:
        """metrics: {'train_loss': ..., 'val_acc': ...} as the loop's history records them; `step`: the
        epoch's last step."""
        scalars = {"/".join(key.split("_", 1)): value for key, value in metrics.items() if key != "epoch"}
        self.add_scalars(scalars | {"lr": lr}, step)  # train_loss -> train/loss, val_acc -> val/acc
        if profile is not None:
            title = f"epoch {metrics.get('epoch', '?')}, step {profile.step}"
            self.events.add_summary(png_summary("gradient_profile", gradient_profile_image(profile, title)), step)
        self.events.flush()  # what the epoch wrote, on disk for a TensorBoard watching the run

    def names(self, layers: list[str], activations: list[str]) -> None:
        """A watched model's module names for its numbered tags, as a table on the Text tab (step 0)."""
        rows = ["| tag | module |", "|---|---|"]
        rows += [f"| layer_{i:0{max(2, len(str(self.n_layers)))}d} | {name} |" for i, name in enumerate(layers, 1)]
        rows += [f"| activation/*/layer_{i:02d} | {name} |" for i, name in enumerate(activations, 1)]
        self.events.add_summary(text("layers", "\n".join(rows)), 0)

    def hparams(self, summary: dict[str, Any], step: int, columns: dict[str, Any] | None = None) -> None:
        """One HParams session in this run's own folder (SummaryWriter.add_hparams would make a subfolder),
        from the run's summary, at `step` (the run's step count). `columns`: the config's values to show
        (vgbench's MLP: HPARAM_COLUMNS; a watched model: the config it was given)."""
        config = summary.get("config", {})
        if columns is None:
            columns = {name: lookup(config, path) for name, path in HPARAM_COLUMNS.items()}
        columns = hparam_columns(columns)
        metrics = {tag: math.nan if value is None else value for tag, value in hparam_metrics(summary).items()}
        for event in hparams_summaries(columns, metrics):
            self.events.add_summary(event, step)
        self.add_scalars(metrics, step)

    def theory(self, theory: dict[str, Any]) -> None:
        """The mean-field prediction beside the step-0 measurement, as a table on the Text tab (step 0)."""
        rows = ["| layer | predicted delta_l / delta_out | measured |", "|---|---|---|"]
        measured = theory.get("measured_delta_profile") or [None] * len(theory["delta_profile"])
        for layer, (predicted, actual) in enumerate(zip(theory["delta_profile"], measured, strict=True), 1):
            rows.append(f"| {layer} | {predicted:.3e} | {'' if actual is None else f'{actual:.3e}'} |")
        head = f"|delta|^2 x {theory['growth_per_layer']:.3f} per layer ({theory['regime']})"
        if "chi_1" in theory:
            head += f", chi_1 = {theory['chi_1']:.3f}, xi_c = {theory['xi_c']:.3g} layers"
        if "batchnorm_growth" in theory:
            head += f", batch norm at batch {theory['batch_size']}: {theory['batchnorm_growth']:.3f} per layer"
        head += f"; first-to-last delta ratio predicted {theory['delta_ratio']:.3e}"
        if "mean_field_delta_ratio" in theory:
            head += f" (Monte Carlo at this width; the mean-field limit {theory['mean_field_delta_ratio']:.3e})"
        if theory.get("measured_delta_ratio") is not None:
            head += f", measured {theory['measured_delta_ratio']:.3e} ({theory['measured_over_predicted']:.2f}x)"
        self.events.add_summary(text("theory", head + "\n\n" + "\n".join(rows)), 0)

    def close(self) -> None:
        if self.writer is None:
            self.events.close()
        else:  # the user's writer stays open for the user
            self.writer.flush()
