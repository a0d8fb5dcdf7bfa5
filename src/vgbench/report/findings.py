"""The report's findings: sentences whose every number is computed from the runs, right for each sign."""

from __future__ import annotations

from collections import Counter

from vgbench.flow import KINDS, learning, orders, thresholds_text
from vgbench.report.load import Sweep, log_mean_spread, mean_spread

CHANCE_ACCURACY_MARGIN = 0.1  # "near chance": test accuracy below 1/classes + this


def ratio_findings(sweep: Sweep) -> list[str]:
    """Per line: the step-0 first-to-last ratio at each x, then which kind of flow holds where."""
    lines = []
    for settings, groups in sweep.lines():
        parts, kinds = [], {}
        for group in groups:
            stats = log_mean_spread([r.ratio("step0") for r in group.runs])
            if stats is None:
                continue
            where = f"{sweep.x_key.split('.')[-1]} {group.settings[sweep.x_key]}" if sweep.x_key else "every run"
            spread = f", runs {stats[1]:.1e} to {stats[2]:.1e}" if len(group.runs) > 1 else ""
            parts.append(f"{where}: {orders(stats[0])}{spread}")
            flows = Counter(r.flow["kind"] for r in group.runs if r.flow)
            if flows:
                kinds.setdefault(flows.most_common(1)[0][0], []).append(where)
        if parts:
            name = sweep.line_label(settings) if settings else "all runs"
            flow = "; ".join(f"{kind} at {', '.join(at)}" for kind, at in kinds.items())
            lines.append(
                f"**{name}**: the first layer's weight gradient at step 0, against the output layer's: "
                + "; ".join(parts)
                + f". Flow: {flow}."
            )
    return lines


def accuracy_findings(sweep: Sweep, chance: float) -> list[str]:
    near_chance, learned = [], []
    for group in sweep.groups:
        stats = mean_spread([r.final("test_acc") for r in group.runs])
        if stats is None:
            continue
        spread = f" ± {stats[1]:.3f}" if len(group.runs) > 1 else ""
        text = f"{group.label()} ({stats[0]:.3f}{spread})"
        (near_chance if stats[0] < chance + CHANCE_ACCURACY_MARGIN else learned).append(text)
    lines = []
    if near_chance:
        lines.append(f"Near chance ({chance:.2f}) after training: " + "; ".join(near_chance) + ".")
    if learned:
        lines.append("Learned: " + "; ".join(learned) + ".")
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
    lines = ratio_findings(sweep) + accuracy_findings(sweep, chance) + learning_findings(sweep)
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
