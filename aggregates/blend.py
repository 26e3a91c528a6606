"""The meta-controller: blends the regime specialists into one decision score.

Each specialist answers a raw margin (log-odds that the price goes up). The
blend is the weighted sum of margins with the regime probabilities as
weights. Working in margin space keeps the blend linear in the specialists'
outputs, which is what makes its SHAP explanation exact: the blend's SHAP
values are the weighted sum of each specialist's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Action", "BlendThresholds", "Blend", "WeightCheck", "blend", "validate_weights"]

WEIGHT_TOLERANCE = 1e-9


class Action:
    """The three things a desk can decide."""

    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


@dataclass(frozen=True)
class WeightCheck:
    """Validated strategy weights and, when they had to be repaired, why."""

    weights: tuple[float, ...]
    anomaly: str | None = None
    """``None``, ``"normalised"`` or ``"equal_fallback"``."""
    detail: str = ""


def validate_weights(raw: Sequence[float]) -> WeightCheck:
    """Make weights non-negative and summing to 1.

    Small repairs are normalisation (negative entries clipped to zero, then
    divided by the sum); weights that cannot be repaired (a NaN or infinity,
    or nothing positive left) fall back to equal weights. Either way the
    returned ``anomaly`` says so, and the desk records it as an event.
    """
    n = len(raw)
    if n == 0:
        raise ValueError("at least one strategy weight is needed")
    # The usual case first, with the same arithmetic as below (NaN fails the >=, inf the sum).
    if all(w >= 0.0 for w in raw) and abs(sum(raw) - 1.0) <= WEIGHT_TOLERANCE:
        return WeightCheck(tuple(float(w) for w in raw))
    equal = tuple(1.0 / n for _ in raw)
    if not all(math.isfinite(w) for w in raw):
        return WeightCheck(equal, "equal_fallback", f"non-finite weights {list(raw)}")
    clipped = [max(w, 0.0) for w in raw]
    total = sum(clipped)
    if total <= 0.0:
        return WeightCheck(equal, "equal_fallback", f"no positive weight in {list(raw)}")
    has_negative = any(w < 0.0 for w in raw)
    if not has_negative and abs(total - 1.0) <= WEIGHT_TOLERANCE:
        return WeightCheck(tuple(float(w) for w in raw))
    reason = "negative weights" if has_negative else f"weights sum to {total!r}"
    return WeightCheck(tuple(w / total for w in clipped), "normalised", f"{reason}: {list(raw)}")


@dataclass(frozen=True)
class BlendThresholds:
    """When a blended probability is strong enough to act on."""

    entry_edge: float = 0.04
    """Act when P(up) is at least this far from 0.5."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.entry_edge < 0.5:
            raise ValueError(f"entry_edge {self.entry_edge} must lie in [0, 0.5)")


@dataclass(frozen=True)
class Blend:
    """The meta-controller's answer for one tick."""

    score: float
    """Blended margin: sum of weight * specialist margin (log-odds)."""
    probability_up: float
    confidence: float
    direction: int
    """+1 wants to be long, -1 short, 0 has no view."""


def blend(
    margins: Sequence[float], weights: Sequence[float], thresholds: BlendThresholds
) -> Blend:
    """Blend specialist margins with already validated ``weights``."""
    score = math.fsum(w * m for w, m in zip(weights, margins, strict=True))
    probability_up = _sigmoid(score)
    confidence = max(probability_up, 1.0 - probability_up)
    if probability_up >= 0.5 + thresholds.entry_edge:
        direction = 1
    elif probability_up <= 0.5 - thresholds.entry_edge:
        direction = -1
    else:
        direction = 0
    return Blend(score, probability_up, confidence, direction)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
