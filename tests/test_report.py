"""The report understands any sweep: groups by what was swept (only seeds averaged), figures by the sweep's
shape, findings right for each sign. Hand-made sweep folders with known numbers, and real runs."""

import json
import math
import shutil

import pytest
import yaml

from tests.conftest import TINY, make_cfg, run_app
from vgbench.config import CONF_DIR
from vgbench.report import build_figures, main, overview, theory_table, write_report
from vgbench.report.figures import MAX_PANELS, steps_to_target_figure
from vgbench.report.findings import findings as compute_findings
from vgbench.report.findings import target_findings
from vgbench.report.load import log_mean_spread, missing_runs, read_sweep
from vgbench.report.render import markdown, results_table
from vgbench.report.tables import grids
from vgbench.train import run


def write_run(
    folder,
    overrides,
    *,
    ratio=1.0,
    delta=1.0,
    accuracy=0.9,
    status="completed",
    losses=(2.3, 0.5),
    seed=0,
    grad_to_weight=1e-2,
    monitored=True,
    error=None,
    targets=None,
):
    """A run folder as a sweep leaves it: .hydra/overrides.yaml, summary.json, steps.csv."""
    name = ",".join(overrides) or "run"
    run_dir = folder / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    config = {
        "activation": {"name": "relu", "params": {}},
        "model": {"depth": 3, "width": 32, "init": "auto"},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "trainer": {"seed": seed, "epochs": 1},
        "data": {"name": "synthetic", "num_classes": 10},
        "loss": "cross_entropy",
    }
    for override in overrides:
        key, value = override.split("=")
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if last in node and isinstance(node[last], dict):
            node[last]["name"] = value
        else:
            node[last] = yaml.safe_load(value)
    summary = {"status": status, "config": config, "epochs_done": 1}
    if status != "failed":
        summary |= {
            "final": {"test_acc": accuracy, "train_loss": losses[-1] if status == "completed" else None},
            "first_to_last_grad_ratio": {"step0": ratio if monitored else None},
            "first_to_last_delta_ratio": {"step0": delta if monitored else None},
        }
        if monitored:
            summary["profile"] = {
                "step0": {
                    "step": 0,
                    "first_to_last_grad_ratio": ratio,
                    "first_to_last_delta_ratio": delta,
                    "total_grad_norm": 1.0,
                    "layers": {"grad_norm/weight": [ratio, 1.0], "grad_to_weight": [grad_to_weight] * 2},
                }
            }
            (run_dir / "steps.csv").write_text(
                "step,epoch,train/batch_loss\n" + "".join(f"{i},1,{v}\n" for i, v in enumerate(losses))
            )
    if error:
        summary["error"] = error
    if targets is not None:  # condition -> the step it first held, or None
        summary["steps"] = 1000
        summary["targets"] = {
            t: {"step": step, "epoch": 1, "seconds": step / 100, "value": 0.9} if step else None
            for t, step in targets.items()
        }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


@pytest.mark.slow
def test_a_learning_rate_sweep_gives_one_group_per_rate(tmp_path):
    rates = {"0.0001": (2.3, 2.2), "0.01": (2.3, 0.4), "0.1": (2.3, 0.1), "10.0": (2.3,)}
    for rate, losses in rates.items():
        write_run(
            tmp_path, [f"optimizer.lr={rate}"], losses=losses, status="diverged" if rate == "10.0" else "completed"
        )
    sweep = read_sweep(tmp_path)
    assert sweep.swept == ["optimizer.lr"] and sweep.x_key == "optimizer.lr" and not sweep.seeds
    assert [g.settings["optimizer.lr"] for g in sweep.groups] == [0.0001, 0.01, 0.1, 10.0]  # not averaged as seeds
    report = write_report(tmp_path)
    text = "\n".join(report.findings)
    assert "What training did: crawled at lr 0.0001; learned at lr 0.01, 0.1; diverged at lr 10.0." in text
    axes = report.figures["final_loss.png"][1].axes[0]
    assert axes.get_xlabel() == "optimizer.lr" and axes.get_xscale() == "log"
    assert report.figures["learning_curves.png"][1].axes[0].get_legend_handles_labels()[1] == [
        "lr=0.0001",
        "lr=0.01",
        "lr=0.1",
        "lr=10.0",
    ]


@pytest.mark.slow
def test_a_weight_scale_sweep_averages_only_its_seeds(tmp_path):
    for scale, ratio in (("0.01", 0.95), ("1.0", 1e5)):
        for seed, factor in ((0, 0.5), (1, 1.0), (2, 2.0)):
            write_run(
                tmp_path,
                [f"model.init_std={scale}", f"trainer.seed={seed}"],
                ratio=ratio * factor,
                delta=ratio * factor,
                seed=seed,
                grad_to_weight=1e-7 if scale == "0.01" else 1.0,
            )
    sweep = read_sweep(tmp_path)
    assert sweep.seeds == [0, 1, 2] and sweep.x_key == "model.init_std"
    assert [(g.settings, len(g.runs)) for g in sweep.groups] == [
        ({"model.init_std": 0.01}, 3),
        ({"model.init_std": 1.0}, 3),
    ]
    report = write_report(tmp_path)
    text = "\n".join(report.findings)
    # the geometric mean of 0.5 x, x and 2 x is x: log10 goes from -0.02 to 5 over two decades of init_std
    assert (
        "rises by about 2.5 orders of magnitude per decade of init_std, from 0.95 at init_std 0.01 to 1e+05 at 1.0"
        in text
    )
    assert report.grids[0][2] == [["all runs", "0.95 (0.47 to 1.9)", "1e+05 (5e+04 to 2e+05)"]]
    assert "Flow: vanishing everywhere at init_std 0.01; exploding toward the input at init_std 1.0." in text
    assert "Values are means over 3 seeds (0, 1, 2)" in text


@pytest.mark.slow
def test_activation_by_depth_by_seeds_keeps_todays_figures(tmp_path):
    for activation, base in (("sigmoid", 0.25), ("relu", 1.0)):
        for depth in (2, 5, 10):
            for seed in (0, 1):
                write_run(
                    tmp_path,
                    [f"activation={activation}", f"model.depth={depth}", f"trainer.seed={seed}"],
                    ratio=base**depth if activation == "sigmoid" else 0.9,
                    seed=seed,
                    accuracy=0.1 if activation == "sigmoid" and depth > 2 else 0.95,
                )
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump(
            {"hydra": {"overrides": {"task": ["activation=sigmoid,relu", "model.depth=2,5,10", "trainer.seed=0,1"]}}}
        )
    )  # the sweep's order
    report = write_report(tmp_path)
    sweep = report.sweep
    assert sweep.x_key == "model.depth" and sweep.line_keys == ["activation"] and len(sweep.groups) == 6
    headline = report.figures["headline.png"][1].axes[0]
    assert headline.get_xlabel() == "model.depth" and headline.get_yscale() == "log"
    assert headline.get_legend_handles_labels()[1] == ["sigmoid", "relu"]
    assert [line.get_ydata().tolist() for line in headline.get_lines()[:1]] == [
        pytest.approx([0.25**2, 0.25**5, 0.25**10])
    ]
    assert [a.get_title() for a in report.figures["profiles.png"][1].axes] == ["sigmoid: step 0", "relu: step 0"]
    text = "\n".join(report.findings)
    # the ratio is 0.25^depth: log10 falls by log10(4) = 0.60 per layer, from 0.0625 at depth 2
    assert (
        "**sigmoid**: the first-to-last gradient ratio at step 0 falls by about 0.6 orders of magnitude per layer, "
        "from 0.062 at depth 2 to 9.5e-07 at 10." in text
    )
    assert "Flow: vanishing toward the input at depth 2, depth 5, depth 10." in text  # 0.25^2 < 0.1 already
    assert "Near chance (0.10) after training: activation=sigmoid, depth=5; activation=sigmoid, depth=10." in text
    ratios, accuracy, _ = report.grids
    assert ratios[1] == ["activation", "depth=2", "depth=5", "depth=10"]
    assert ratios[2][0] == [
        "sigmoid",
        "0.062 (0.062 to 0.062)",
        "0.00098 (0.00098 to 0.00098)",
        "9.5e-07 (9.5e-07 to 9.5e-07)",
    ]
    assert accuracy[2][0][1:] == ["0.950 ± 0.000", "0.100 ± 0.000", "0.100 ± 0.000"]
    markdown_text = report.files["report.md"].read_text()
    assert markdown_text.index("### Test accuracy") < markdown_text.index("## Findings")  # the tables open it
    for name in (
        "report.md",
        "report.html",
        "results.csv",
        "headline.png",
        "accuracy.png",
        "profiles.png",
        "heatmap.png",
        "saturation.png",
        "learning_curves.png",
        "final_loss.png",
    ):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.slow
def test_without_a_numeric_key_the_key_with_most_values_is_the_axis(tmp_path):
    for activation in ("sigmoid", "tanh", "relu"):
        for init in ("pytorch_default", "xavier_uniform", "kaiming_normal", "uniform_standard"):
            write_run(tmp_path, [f"activation={activation}", f"model.init={init}"])
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "hydra": {
                    "sweeper": {
                        "params": {
                            "activation": "sigmoid,tanh,relu",
                            "model.init": "pytorch_default,xavier_uniform,kaiming_normal,uniform_standard",
                        }
                    }
                }
            }
        )
    )
    sweep = read_sweep(tmp_path)
    assert sweep.x_key == "model.init" and sweep.line_keys == ["activation"]
    axes = write_report(tmp_path).figures["accuracy.png"][1].axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == [
        "pytorch_default",
        "xavier_uniform",
        "kaiming_normal",
        "uniform_standard",
    ]


def test_seeds_are_averaged_geometrically_for_ratios():
    assert log_mean_spread([1e-6, 1e-4, None, float("nan")]) == pytest.approx((1e-5, 1e-6, 1e-4))


@pytest.mark.slow
def test_failed_and_missing_runs_are_named(tmp_path):
    write_run(tmp_path, ["model.depth=2"])
    write_run(tmp_path, ["model.depth=0"], status="failed", error="model.depth=0 is not valid; it must be >= 1")
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["model.depth=2,0,1e1"]}}}))
    text = "\n".join(write_report(tmp_path).findings)
    assert "Failed: depth=0 (model.depth=0 is not valid; it must be >= 1)." in text
    assert "Missing (1 of the sweep's runs have no summary yet): model.depth=1e1." in text


def test_missing_runs_compare_numbers_not_spellings(tmp_path):
    write_run(tmp_path, ["optimizer.lr=0.0001"])
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": ["optimizer.lr=1e-4"]}}}))
    assert missing_runs(tmp_path, read_sweep(tmp_path).runs) == []


def test_missing_runs_compare_booleans_not_spellings(tmp_path):
    write_run(tmp_path, ["model.residual=False"])  # Hydra writes a job's `false` as Python does
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"overrides": {"task": ["model.residual=false,true"]}}})
    )
    assert missing_runs(tmp_path, read_sweep(tmp_path).runs) == ["model.residual=true"]


@pytest.mark.slow
def test_runs_without_the_monitor_are_reported_not_crashed_on(tmp_path):
    for depth in (2, 3):
        run(make_cfg(*TINY, f"model.depth={depth}", "monitor.enabled=false"), tmp_path / f"model.depth={depth}")
        (tmp_path / f"model.depth={depth}" / ".hydra").mkdir()
        (tmp_path / f"model.depth={depth}" / ".hydra" / "overrides.yaml").write_text(f"- model.depth={depth}\n")
    report = write_report(tmp_path)
    assert "No monitor measurements (monitor.enabled=false) in 2 run(s): depth=2, depth=3" in "\n".join(report.findings)
    notes = [t.get_text() for t in report.figures["headline.png"][1].axes[0].texts]
    assert notes == ["not recorded (monitor.enabled=false)"]
    assert all(path.stat().st_size > 0 for path in report.files.values())


@pytest.mark.slow
def test_report_on_a_single_run(tmp_path, capsys):
    summary = run(make_cfg(*TINY, "trainer.epochs=1", "monitor.every_n_steps=2"), tmp_path)
    main([str(tmp_path)])
    printed = capsys.readouterr().out
    assert f"report: {tmp_path / 'report.html'}" in printed
    assert "- Learned: all runs." in printed  # the findings, in the terminal
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 10  # self-contained: steps to target among them
    assert "1 run(s)" in (tmp_path / "report.md").read_text()
    assert summary["flow"]["kind"] == "healthy" and "healthy" in (tmp_path / "results.csv").read_text()


@pytest.mark.slow
def test_partial_sweep_names_what_is_missing(tmp_path):
    sweep = ["-m", *TINY, "trainer.epochs=1", "activation=sigmoid,relu", "model.depth=1,2"]
    result = run_app(*sweep, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    cut_off = next(tmp_path.glob("activation=relu*model.depth=2*"))
    shutil.rmtree(cut_off)  # as if the sweep was cut off before this run
    report = write_report(tmp_path).files["report.md"].read_text()
    assert "3 run(s)" in report and "1 of the sweep's runs missing" in report
    assert "Missing (1 of the sweep's runs have no summary yet): activation=relu,model.depth=2." in report


def test_report_on_an_empty_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        f"error: no summary.json under {tmp_path}: is it a run or sweep folder of vgbench?\n"
    )
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "nope")])
    assert (stop.value.code, capsys.readouterr().err) == (2, f"error: {tmp_path / 'nope'} is not a folder\n")


def test_ratio_sentences_are_right_for_each_sign():
    from vgbench.flow import orders

    assert orders(1e-3) == "1.0e-03 (3.0 orders of magnitude below)"
    assert orders(2e4) == "2.0e+04 (4.3 orders of magnitude above)"
    assert orders(1.05) == "1.1 (about the same)"
    assert math.isnan(float("nan"))


PRESET_AXES = {
    "vanishing": ("model.depth", ["activation"]),
    "init_study": ("model.init", ["activation"]),
    "lr_study": ("optimizer.lr", []),
    "mnist_default": (None, []),
    "criticality": ("model.sigma_w2", ["model.depth"]),
    "isometry": ("model.depth", ["activation", "model.init"]),
    "batchnorm": ("model.depth", ["data.batch_size", "activation"]),
    "residual": ("model.depth", ["activation", "model.residual"]),
    "dropout_criticality": ("model.sigma_w2", ["model.depth", "model.dropout"]),
    "finite_width": ("model.depth", ["model.width"]),
}
PRESET_FIGURES = {  # what only they draw
    "criticality.png": {"criticality", "dropout_criticality"},
    "spectra.png": {"isometry"},
    "finite_width.png": {"finite_width"},
}
# the largest presets' grids, cut to a few values of each swept key (the axes stay; the suite's time drops)
PRESET_GRIDS = {
    "criticality": ["model.depth=20,10", "model.sigma_w2=1.0,2.0,3.0"],
    "isometry": ["model.depth=30,10"],
    "vanishing": ["trainer.seed=0,1", "model.depth=5,2"],
    "batchnorm": ["model.depth=10,5", "data.batch_size=8,64"],
    "residual": ["model.depth=10,5"],
    "dropout_criticality": ["model.depth=10,5", "model.sigma_w2=1.0,3.0", "model.dropout=0.0,0.3"],
    "finite_width": ["model.depth=4,2", "model.width=16,8", "trainer.seed=range(8)"],
}


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_preset_writes_a_report_with_the_axes_it_varies(tmp_path, preset):
    """Each preset through the real command line on a tiny budget, then its report's parts: the axes, the
    figures it draws, its tables and findings (writing a report is the other tests'; the sweep callback's is
    test_sweep's)."""
    assert preset in PRESET_AXES, f"add {preset}'s axes to PRESET_AXES"
    tiny = [
        "data=synthetic",
        "data.num_train=128",
        "data.num_test=64",
        "model.width=16",
        "trainer.epochs=1",
        "trainer.device=cpu",
        "monitor.every_n_steps=1",
        "data.limit_train=null",
    ]
    folder = tmp_path / preset
    if "launcher: stacked" in (CONF_DIR / "experiment" / f"{preset}.yaml").read_text():
        tiny.append("hydra.launcher.n_jobs=1")  # its stacks one after another in this process: no worker to start
    result = run_app(
        f"experiment={preset}",
        *tiny,
        *PRESET_GRIDS.get(preset, []),
        f"hydra.sweep.dir={folder}",
        f"hydra.run.dir={folder}",
        "hydra.callbacks.vgbench.report=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    x_key, line_keys = PRESET_AXES[preset]
    sweep = read_sweep(folder)  # the report's parts: its figures drawn (writing them is the other tests')
    assert (sweep.x_key, sweep.line_keys) == (x_key, line_keys)
    assert grids(sweep) and compute_findings(sweep, 0.1, missing_runs(folder, sweep.runs))
    assert theory_table(sweep) is not None  # every preset's networks have a theory (or a Jacobian spectrum)
    figures = {name: (title, figure) for name, (title, figure, _) in build_figures(sweep, 0.1).items() if figure}
    for name, (title, figure) in figures.items():
        if name in ("headline.png", "accuracy.png", "final_loss.png"):
            assert figure.axes[0].get_xlabel() == (x_key or ""), (name, title)
        if name in ("profiles.png", "learning_curves.png") and line_keys:  # a panel per line
            lines = {tuple(g.settings[k] for k in line_keys) for g in sweep.groups}
            assert len(figure.axes) == min(len(lines), MAX_PANELS), name
    for name, presets in PRESET_FIGURES.items():
        assert (name in figures) == (preset in presets), name


@pytest.mark.slow
def test_each_group_of_seeds_gets_a_mean_and_band_run_for_tensorboard(tmp_path):
    """_mean/<group>/ holds, per tag and step, the mean, min and max over the group's completed runs: checked
    against the runs' own summaries (train loss, test accuracy) and layers.csv (layer 1's weight-gradient
    norm); a diverged run is left out and counted; the layout has margin charts; a second report rewrites it."""
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    from vgbench.report.aggregate import AGGREGATE_DIR

    for depth in (2, 3):
        for seed in (0, 1, 2):
            name = f"model.depth={depth},trainer.seed={seed}"
            lr = "optimizer.lr=1e6" if (depth, seed) == (3, 2) else "optimizer.lr=0.01"  # this one diverges
            run(
                make_cfg(*TINY, f"model.depth={depth}", f"trainer.seed={seed}", lr, "monitor.every_n_steps=4"),
                tmp_path / name,
            )
            (tmp_path / name / ".hydra").mkdir()
            (tmp_path / name / ".hydra" / "overrides.yaml").write_text(
                f"- model.depth={depth}\n- trainer.seed={seed}\n"
            )
    report = write_report(tmp_path)
    assert sorted(p.name for p in report.aggregates) == ["model.depth=2", "model.depth=3"]
    for depth, kept in ((2, (0, 1, 2)), (3, (0, 1))):
        events = EventAccumulator(str(tmp_path / AGGREGATE_DIR / f"model.depth={depth}"), size_guidance={"scalars": 0})
        events.Reload()
        summaries = [
            json.loads((tmp_path / f"model.depth={depth},trainer.seed={s}" / "summary.json").read_text()) for s in kept
        ]
        last = events.Scalars("train/loss")[-1]
        losses = [s["history"][-1]["train_loss"] for s in summaries]
        assert last.value == pytest.approx(sum(losses) / len(losses), rel=1e-6)
        assert events.Scalars("band_min/train/loss")[-1].value == pytest.approx(min(losses), rel=1e-6)
        assert events.Scalars("band_max/train/loss")[-1].value == pytest.approx(max(losses), rel=1e-6)
        accuracies = [s["final"]["test_acc"] for s in summaries]
        assert events.Scalars("test/acc")[-1].value == pytest.approx(sum(accuracies) / len(accuracies), rel=1e-6)
        first = []
        for s in kept:
            with (tmp_path / f"model.depth={depth},trainer.seed={s}" / "layers.csv").open() as f:
                first.append(
                    next(
                        float(r["grad_norm/weight"])
                        for r in csv.DictReader(f)
                        if r["step"] == "0" and r["layer"] == "1"
                    )
                )
        step0 = events.Scalars("grad_norm/weight/layer_01")[0]
        assert (step0.step, step0.value) == (0, pytest.approx(sum(first) / len(first), rel=1e-5))
        text = events.Tensors("seeds/text_summary")[0].tensor_proto.string_val[0].decode()
        assert text.startswith(f"mean of {len(kept)} run(s)") and ("1 left out" in text) == (depth == 3)
        (layout,) = events.Tensors("custom_scalars__config__")
        charts = layout_pb2.Layout.FromString(layout.tensor_proto.string_val[0]).category[0].chart
        margins = {chart.title: chart.margin.series[0] for chart in charts}
        assert (margins["train/loss"].lower, margins["train/loss"].upper) == (
            "band_min/train/loss",
            "band_max/train/loss",
        )
        assert {"test/acc", "grad_norm/weight/layer_01", "delta_norm/layer_03"} <= set(margins)
    assert len(list((tmp_path / AGGREGATE_DIR).rglob("events.out.tfevents.*"))) == 2
    assert len(write_report(tmp_path).aggregates) == 2 and len(list((tmp_path / AGGREGATE_DIR).iterdir())) == 2


def test_the_overview_leaves_out_knobs_that_do_not_act(tmp_path):
    """model.init_std acts only with model.init=normal: beside init=auto the overview does not state it."""
    for depth in (2, 3):
        write_run(tmp_path / "auto", [f"model.depth={depth}", "model.init_std=0.01"])
        write_run(tmp_path / "normal", [f"model.depth={depth}", "model.init=normal", "model.init_std=0.05"])
    assert "model.init_std" not in read_sweep(tmp_path / "auto").fixed
    assert read_sweep(tmp_path / "normal").fixed["model.init_std"] == 0.05
    assert "`model.init_std=0.05`" in " ".join(overview(read_sweep(tmp_path / "normal"), []))


def test_the_headline_tables_as_latex(tmp_path, capsys):
    """vgbench-report --format latex writes tables.tex: one booktabs table per grid, LaTeX's specials
    escaped; a format it does not know is one line and exit 2."""
    for activation in ("sigmoid", "leaky_relu"):
        for depth in (2, 5):
            write_run(tmp_path, [f"activation={activation}", f"model.depth={depth}"], ratio=0.25**depth, accuracy=0.5)
    main([str(tmp_path), "--format", "latex"])
    tex = (tmp_path / "tables.tex").read_text()
    assert tex.count(r"\begin{tabular}{lrr}") == 3 and tex.count(r"\toprule") == 3
    assert r"activation & depth=2 & depth=5 \\" in tex
    assert r"leaky\_relu & 0.062 & 0.00098 \\" in tex  # one seed: the value alone
    assert r"\caption{Test accuracy (mean $\pm$ std over seeds)}" in tex
    assert "tables.tex" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), "--format", "word"])
    assert (stop.value.code, capsys.readouterr().err) == (
        2,
        "error: vgbench-report: argument --format: invalid choice: 'word' (choose from 'latex') "
        "(see vgbench-report --help)\n",
    )


def test_steps_to_target_in_the_tables_the_csv_the_figure_and_the_findings(tmp_path):
    """Each group's mean step over the seeds that met the target, their range and how many never did; the
    conclusion names the fastest group, the slowest one's multiple and the groups that never got there."""
    steps = {  # (activation, depth) -> each seed's step (None: never met)
        ("sigmoid", 2): [400, 500, None],
        ("sigmoid", 5): [None, None, None],
        ("relu", 2): [50, 50, 50],
        ("relu", 5): [75, 100, 125],
    }
    for (activation, depth), per_seed in steps.items():
        for seed, step in enumerate(per_seed):
            overrides = [f"activation={activation}", f"model.depth={depth}", f"trainer.seed={seed}"]
            write_run(tmp_path, overrides, seed=seed, targets={"train_acc>=0.8": step})
    sweep = read_sweep(tmp_path)  # the report's parts, without drawing every figure
    headline = grids(sweep)
    title, columns, rows = next(t for t in headline if t[0].startswith("Steps to train_acc>=0.8"))
    assert columns == ["activation", "depth=2", "depth=5"]
    assert {row[0]: row[1:] for row in rows} == {
        "sigmoid": ["450 (400 to 500; 1 of 3 never)", "never"],
        "relu": ["50", "100 (75 to 125)"],
    }
    assert [t[0].split(" ")[0] for t in headline] == ["First-to-last", "Test", "Steps", "Flow"]
    columns, rows = results_table(sweep)
    steps = [row[columns.index("steps_to train_acc>=0.8")] for row in rows]
    assert sorted(steps, key=lambda s: s or 0) == [None] * 4 + [50, 50, 50, 75, 100, 125, 400, 500]
    assert target_findings(sweep) == [
        "**train_acc>=0.8**: fastest activation=relu, depth=2, in 50 steps; slowest to get there "
        "activation=sigmoid, depth=2, 9 times as many; never met by 1 of 4 groups: activation=sigmoid, depth=5."
    ]
    figure = steps_to_target_figure(sweep)
    axes = figure.axes[0]
    assert axes.get_ylabel() == "steps to train_acc>=0.8" and axes.get_xlabel() == "model.depth"
    never = [c for c in axes.collections if c.get_label().startswith("never met")]
    assert len(never) == 1 and never[0].get_offsets()[:, 1].tolist() == [1500.0] * 4  # above the budget, 1000
    assert "| sigmoid | 450 (400 to 500; 1 of 3 never) | never |" in markdown("", [], [], [], [], headline)
