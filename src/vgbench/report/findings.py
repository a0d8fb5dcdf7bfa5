"""The report's findings: sentences whose every number is computed from the runs, right for each sign."""

from __future__ import annotations

import math
from collections import Counter

from vgbench.flow import KINDS, learning, thresholds_text
from vgbench.report.load import Sweep, log_mean_spread, mean_spread

CHANCE_ACCURACY_MARGIN = 0.1  # "near chance": test accuracy below 1/classes + this


def ratio_findings(sweep: Sweep) -> list[str]:
    """Per line, the conclusion the ratio table supports: how the step-0 first-to-last ratio moves along a
    numeric x (orders of magnitude per layer, per unit of x, or per decade where x spans decades: a
    least-squares line through the log of each group's geometric mean), or that it stays within a factor of
    3 from end to end; then which kind of flow holds where."""
    lines = []
    axis = sweep.x_key.split(".")[-1] if sweep.x_key else ""
    unit = "layer" if sweep.x_key == "model.depth" else f"unit of {axis}"
    for settings, groups in sweep.lines():
        points, kinds = [], {}
        for group in groups:
            stats = log_mean_spread([r.ratio("step0") for r in group.runs])
            if stats is None:
                continue
            x = group.settings[sweep.x_key] if sweep.x_key else None
            points.append((x, math.log10(stats[0])))
            flows = Counter(r.flow["kind"] for r in group.runs if r.flow)
            if flows:
                kinds.setdefault(flows.most_common(1)[0][0], []).append(f"{axis} {x}" if sweep.x_key else "every run")
        if not points:
            continue
        logs = [log for _, log in points]
        low, high = 10 ** min(logs), 10 ** max(logs)
        if max(logs) - min(logs) <= math.log10(3):  # less than 3-fold from end to end: no trend to speak of
            trend = f"stays between {low:.2g} and {high:.2g} at every {axis or 'run'}"
            if max(abs(log) for log in logs) <= math.log10(3):
                trend += ", within a factor of 3 of the output layer's gradient"
        elif sweep.numeric_x and len(points) > 1:
            xs = [float(x) for x, _ in points]
            if min(xs) > 0 and max(xs) / min(xs) >= 100:  # x spans decades (an init scale, a learning rate)
                xs, per = [math.log10(x) for x in xs], f"decade of {axis}"
            else:
                per = unit
            mean_x, mean_log = sum(xs) / len(xs), sum(logs) / len(logs)
            slope = sum((x - mean_x) * (y - mean_log) for x, y in zip(xs, logs, strict=True)) / sum(
                (x - mean_x) ** 2 for x in xs
            )
            trend = (
                f"{'falls' if slope < 0 else 'rises'} by about {abs(slope):.2g} orders of magnitude per {per}, "
                f"from {10 ** logs[0]:.2g} at {axis} {points[0][0]} to {10 ** logs[-1]:.2g} at {points[-1][0]}"
            )
        else:
            trend = f"ranges from {low:.2g} to {high:.2g}"
        name = sweep.line_label(settings) if settings else "all runs"
        flow = "; ".join(f"{kind} at {', '.join(at)}" for kind, at in kinds.items())
        lines.append(f"**{name}**: the first-to-last gradient ratio at step 0 {trend}. Flow: {flow}.")
    return lines


def accuracy_findings(sweep: Sweep, chance: float) -> list[str]:
    """Which groups stayed near chance and which learned (their numbers are in the accuracy table)."""
    near_chance, learned = [], []
    for group in sweep.groups:
        stats = mean_spread([r.final("test_acc") for r in group.runs])
        if stats is not None:
            (near_chance if stats[0] < chance + CHANCE_ACCURACY_MARGIN else learned).append(group.label())
    lines = []
    if near_chance:
        lines.append(f"Near chance ({chance:.2f}) after training: " + "; ".join(near_chance) + ".")
    if learned:
        lines.append("Learned: " + "; ".join(learned) + ".")
    return lines


def target_findings(sweep: Sweep) -> list[str]:
    """Per target (vgbench.targets), the conclusion its table supports: the group that met it in the fewest
    steps, how many times as many the slowest group that met it needed, and the groups none of whose seeds
    met it."""
    lines = []
    for target in sweep.targets:
        reached, never = [], []
        for group in sweep.groups:
            steps, recorded = group.steps_to(target)
            if steps:
                reached.append((sum(steps) / len(steps), group.label()))
            elif recorded:
                never.append(group.label())
        if not reached and not never:
            continue
        parts = []
        if reached:
            (fastest, fast), (slowest, slow) = min(reached), max(reached)
            parts.append(f"fastest {fast}, in {fastest:.0f} steps")
            if len(reached) > 1 and slowest > fastest:
                parts.append(f"slowest to get there {slow}, {slowest / fastest:.2g} times as many")
        if never:
            parts.append(f"never met by {len(never)} of {len(reached) + len(never)} groups: " + "; ".join(never))
        lines.append(f"**{target}**: " + "; ".join(parts) + ".")
    return lines


def learning_findings(sweep: Sweep) -> list[str]:
    """Crawled, learned, diverged (vgbench.flow.learning): per line, the x values of each verdict (a group's
    verdict is its seeds' majority). Nothing when every group did the same."""
    verdicts: dict[tuple, dict[str, list[str]]] = {}
    for settings, groups in sweep.lines():
        for group in groups:
            votes = Counter(
                learning(r.status, r.batch_losses[0][1] if r.batch_losses else None, r.final("train_loss"))
                for r in group.runs
            )
            votes.pop(None, None)
            if votes:
                where = str(group.settings[sweep.x_key]) if sweep.x_key else "every run"
                verdicts.setdefault(tuple(settings.items()), {}).setdefault(votes.most_common(1)[0][0], []).append(
                    where
                )
    if len({kind for by_kind in verdicts.values() for kind in by_kind}) < 2:
        return []  # one regime: nothing to contrast
    axis = sweep.x_key.split(".")[-1] if sweep.x_key else ""
    parts = []
    for line, by_kind in verdicts.items():
        name = sweep.line_label(dict(line)) if line else ""
        kinds = "; ".join(
            f"{kind} at {axis} {', '.join(values)}" if len(by_kind) > 1 else f"{kind} at every {axis}"
            for kind, values in by_kind.items()
        )
        parts.append(f"{name}: {kinds}" if name else kinds)
    return ["What training did: " + " | ".join(parts) + "."]


def theory_findings(sweep: Sweep, chance: float) -> list[str]:
    """How the mean-field prediction compares; for a (sigma_w^2, depth) sweep, how many runs fall on the
    side of the 6 xi_c curve the theory puts them; for Jacobian spectra, their spread along x."""
    lines = []
    factors = [
        t["measured_over_predicted"]
        for r in sweep.runs
        if (t := r.summary.get("theory") or {}).get("applies") and t.get("measured_over_predicted")
    ]
    if factors:
        lines.append(
            f"Mean-field theory at step 0: the measured first-to-last delta ratio is {min(factors):.2f} to "
            f"{max(factors):.2f} times the predicted one over {len(factors)} run(s)."
        )
    judged = []
    for run in sweep.runs:
        theory, accuracy = run.summary.get("theory") or {}, run.final("test_acc")
        if theory.get("applies") and "trainable" in theory and accuracy is not None and run.status == "completed":
            learned = accuracy >= chance + CHANCE_ACCURACY_MARGIN
            judged.append(learned == theory["trainable"])
    if judged and {"model.sigma_w2", "model.depth"} <= set(sweep.swept):
        lines.append(
            f"Trainable region: {sum(judged)} of {len(judged)} runs ({sum(judged) / len(judged):.0%}) are "
            "on the side of depth = 6 xi_c the theory puts them (learned above chance below it, stayed "
            "near chance above it)."
        )
    for settings, groups in sweep.lines():
        spectra = [(g.settings.get(sweep.x_key), g.runs[0].summary.get("jacobian")) for g in groups]
        spectra = [(x, j) for x, j in spectra if j]
        if spectra:
            name = sweep.line_label(settings) if settings else "all runs"
            axis = sweep.x_key.split(".")[-1] if sweep.x_key else ""
            values = ", ".join(
                f"{axis} {x}: {j['mean_sq_singular']:.3g}; {j['relative_spread']:.3g}" for x, j in spectra
            )
            lines.append(
                f"**{name}**: the Jacobian's squared singular values at step 0 (mean; relative spread "
                f"var / mean^2): {values}."
            )
    return lines


def findings(sweep: Sweep, chance: float, missing: list[str]) -> list[str]:
    runs = sweep.runs
    lines = ratio_findings(sweep) + accuracy_findings(sweep, chance) + target_findings(sweep) + learning_findings(sweep)
    lines += theory_findings(sweep, chance)
    flows = Counter(r.flow["kind"] for r in runs if r.flow)
    if flows:
        lines.append(
            "Gradient flow at step 0, by run: "
            + ", ".join(f"{flows[k]} {k}" for k in KINDS if flows[k])
            + f" ({thresholds_text()})."
        )
    unmonitored = [r.label(sweep.swept) for r in runs if not r.monitored and r.status != "failed"]
    if unmonitored:
        lines.append(
            f"No monitor measurements (monitor.enabled=false) in {len(unmonitored)} run(s): "
            + ", ".join(unmonitored)
            + "; they are in the accuracy figures only."
        )
    if sweep.seeds and sweep.groups:  # groups hold the runs that did not fail
        sizes = sorted({len(g.runs) for g in sweep.groups})
        count = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
        lines.append(
            f"Values are means over {count} seeds ({', '.join(map(str, sweep.seeds))}); ratios are "
            "geometric means with their range, accuracies means ± standard deviation."
        )
    diverged = [r.label(sweep.swept) for r in runs if r.status == "diverged"]
    failed = [
        f"{r.label(sweep.swept)} ({r.summary.get('error', 'no error recorded')})" for r in runs if r.status == "failed"
    ]
    lines.append(f"Diverged: {', '.join(diverged)}." if diverged else "No run diverged.")
    lines.append(f"Failed: {'; '.join(failed)}." if failed else "No run failed.")
    if missing:
        lines.append(f"Missing ({len(missing)} of the sweep's runs have no summary yet): " + "; ".join(missing) + ".")
    return lines
