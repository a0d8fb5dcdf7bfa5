"""What kind of gradient flow a run has at initialisation, named from more than one number. Torch-free.

One ratio alone misleads: when every layer's gradient vanishes together, ||dL/dW_1|| / ||dL/dW_out|| reads
about 1 and looks healthy. So the step-0 profile is read three ways:

  grad_ratio      ||dL/dW_1|| / ||dL/dW_out||: the weight gradients of the first and the last layer
  delta_ratio     delta_1 / delta_out: the back-propagated error at the first layer over the output's
                  (it does not carry the factor ||h_{l-1}|| that the weight gradient does)
  grad_to_weight  the largest ||dL/dW_l|| / ||W_l|| over the layers: how far one step of SGD can move any
                  layer at all (an lr of 0.1 moves it by a tenth of this)

and named (the first case that applies):

  vanishing everywhere         every layer's gradient is below EVERYWHERE_GRAD_TO_WEIGHT of its weights:
                               no layer moves, whatever the ratios say
  exploding toward the input   either ratio above EXPLODING_RATIO: the signal grows as it goes back
  vanishing toward the input   either ratio below VANISHING_RATIO: the first layers hear little
  healthy                      both ratios within [VANISHING_RATIO, EXPLODING_RATIO]

And what training then did with it (the report's learning-rate sweeps):

  diverged    the run's loss turned non-finite (status diverged)
  crawled     its final training loss is above CRAWL_FRACTION of its loss at step 0: it barely moved
  learned     otherwise

The thresholds live here and nowhere else; the report prints the ones it used.
"""

from __future__ import annotations

import math
from typing import Any

VANISHING_RATIO = 0.1  # a first layer with under a tenth of the output layer's gradient (or error)
EXPLODING_RATIO = 10.0  # ... or over ten times it
EVERYWHERE_GRAD_TO_WEIGHT = 1e-5  # no layer's gradient reaches this share of its weights

HEALTHY, VANISHING, VANISHING_EVERYWHERE, EXPLODING = (
    "healthy",
    "vanishing toward the input",
    "vanishing everywhere",
    "exploding toward the input",
)
KINDS = (HEALTHY, VANISHING, VANISHING_EVERYWHERE, EXPLODING)
CRAWL_FRACTION = 0.5  # a final training loss above half the step-0 loss: it crawled
THRESHOLDS = {
    "vanishing_ratio": VANISHING_RATIO,
    "exploding_ratio": EXPLODING_RATIO,
    "everywhere_grad_to_weight": EVERYWHERE_GRAD_TO_WEIGHT,
    "crawl_fraction": CRAWL_FRACTION,
}
DIVERGED, CRAWLED, LEARNED = "diverged", "crawled", "learned"


def learning(status: str, first_loss: float | None, final_loss: float | None) -> str | None:
    """What training did: diverged, crawled (final loss above CRAWL_FRACTION of the step-0 loss) or learned."""
    if status == "diverged":
        return DIVERGED
    if first_loss is None or final_loss is None or not math.isfinite(final_loss):
        return None
    return CRAWLED if final_loss > CRAWL_FRACTION * first_loss else LEARNED


def thresholds_text() -> str:
    return (
        f"flow: a ratio below {VANISHING_RATIO:g} is vanishing toward the input, above {EXPLODING_RATIO:g} "
        f"exploding; every layer's gradient below {EVERYWHERE_GRAD_TO_WEIGHT:g} of its weights is vanishing "
        f"everywhere. Learning: a final training loss above {CRAWL_FRACTION:g} of the step-0 loss crawled"
    )


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def classify(profile: dict[str, Any] | None) -> dict[str, Any] | None:
    """The flow of one measurement (a summary's `profile.step0`); None without one."""
    if not profile:
        return None
    grad_ratio, delta_ratio = profile.get("first_to_last_grad_ratio"), profile.get("first_to_last_delta_ratio")
    grad_to_weight = _finite(profile.get("layers", {}).get("grad_to_weight", []))
    largest = max(grad_to_weight) if grad_to_weight else None
    ratios = _finite([grad_ratio, delta_ratio])
    if largest is not None and largest < EVERYWHERE_GRAD_TO_WEIGHT:
        kind = VANISHING_EVERYWHERE
    elif ratios and max(ratios) > EXPLODING_RATIO:
        kind = EXPLODING
    elif ratios and min(ratios) < VANISHING_RATIO:
        kind = VANISHING
    elif ratios:
        kind = HEALTHY
    else:
        return None
    return {"kind": kind, "grad_ratio": grad_ratio, "delta_ratio": delta_ratio, "max_grad_to_weight": largest}


def orders(ratio: float) -> str:
    """A ratio as words that are right for its sign: '3.2e-06 (5.5 orders of magnitude below)'."""
    if ratio <= 0 or not math.isfinite(ratio):
        return f"{ratio:.1e}"
    exponent = math.log10(ratio)
    if abs(exponent) < 0.05:
        return f"{ratio:.2g} (about the same)"
    return f"{ratio:.1e} ({abs(exponent):.1f} orders of magnitude {'below' if exponent < 0 else 'above'})"


def describe(flow: dict[str, Any]) -> str:
    """One sentence for a classified flow, right for each sign of each ratio."""
    parts = []
    if flow.get("grad_ratio") is not None:
        parts.append(f"the first layer's weight gradient is {orders(flow['grad_ratio'])} the output layer's")
    if flow.get("delta_ratio") is not None:
        parts.append(f"its back-propagated error is {orders(flow['delta_ratio'])} the output's")
    if flow.get("max_grad_to_weight") is not None:
        parts.append(f"the largest gradient is {flow['max_grad_to_weight']:.1e} of its layer's weights")
    return f"{flow['kind']}: " + "; ".join(parts)
