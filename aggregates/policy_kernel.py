"""The compiled core of the regime-blend policy: regime step, specialist margins and blend in ONE Numba call.

Per tick, :class:`aggregates.policy.DecisionPolicy` used to cross from Python
into Numba twice (regime filter, specialists) and then validate the weights and
blend them in Python, a few µs of interpreter work each. :func:`policy_core`
does all of it in one call, with the same arithmetic in the same order, so its
figures are the Python path's bit for bit (tests/aggregates/test_policy_kernel.py
runs both on many inputs):

- the weights check is ``validate_weights``' fast case (every weight >= 0 and
  their left-to-right sum within 1e-9 of 1); anything else is flagged and the
  policy takes the Python path, which repairs the weights and says why;
- the blended margin is ``math.fsum`` of the products, ported from CPython
  (Shewchuk's partials and its final half-way correction) for finite values; a
  product or partial sum that is not finite is flagged instead;
- the sigmoid and thresholds are :func:`aggregates.blend.blend`'s.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from aggregates.regime import regime_step
from aggregates.trees import _stack_margins

__all__ = ["CORE_SIZE", "OK", "policy_core"]

N_REGIMES = 3
# Slots of the output array.
PROBS = 0  # 3 regime probabilities
ENTROPY = 3
MARGINS = 4  # 3 specialist margins
SCORE = 7
PROBABILITY_UP = 8
CONFIDENCE = 9
DIRECTION = 10
STATUS = 11
CORE_SIZE = 12
OK = 0.0
"""``out[STATUS]`` when every figure was computed here; anything else: take the Python path."""
_WEIGHTS_REPAIRED = 1.0
_NOT_FINITE = 2.0
WEIGHT_TOLERANCE = 1e-9


@njit(cache=True)
def _fsum(values, n):  # pragma: no cover - compiled
    """CPython's ``math.fsum`` of ``values[:n]`` (finite values; NaN when a partial sum is not finite)."""
    partials = np.empty(n + 1, dtype=np.float64)
    count = 0
    for k in range(n):
        x = values[k]
        i = 0
        for j in range(count):
            y = partials[j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                partials[i] = lo
                i += 1
            x = hi
        count = i
        if x != 0.0:
            if not math.isfinite(x):
                return math.nan
            partials[count] = x
            count += 1
    hi = 0.0
    if count > 0:
        count -= 1
        hi = partials[count]
        lo = 0.0
        while count > 0:
            x = hi
            count -= 1
            y = partials[count]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if count > 0 and ((lo < 0.0 and partials[count - 1] < 0.0) or (lo > 0.0 and partials[count - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    return hi


@njit(cache=True)
def policy_core(prior, x, return_index, volatility_index, trans, means, stds,
                left, right, feature, threshold, value, roots, bounds, inits, rates,
                entry_edge, out):  # pragma: no cover - compiled
    """Regime step from ``prior``, the three margins of ``x``, and their blend, into ``out`` (slots above)."""
    volatility = x[volatility_index]
    z = x[return_index] / volatility if volatility > 0 else math.nan
    probs = out[PROBS:PROBS + N_REGIMES]
    out[ENTROPY] = regime_step(prior, z, trans, means, stds, probs)
    margins = out[MARGINS:MARGINS + N_REGIMES]
    _stack_margins(x, left, right, feature, threshold, value, roots, bounds, inits, rates, margins)
    out[STATUS] = OK
    total = 0.0
    for j in range(N_REGIMES):
        w = probs[j]
        if not w >= 0.0:
            out[STATUS] = _WEIGHTS_REPAIRED
        total += w
    if not abs(total - 1.0) <= WEIGHT_TOLERANCE:
        out[STATUS] = _WEIGHTS_REPAIRED
    if out[STATUS] != OK:
        return
    products = np.empty(N_REGIMES, dtype=np.float64)
    for j in range(N_REGIMES):
        products[j] = probs[j] * margins[j]
        if not math.isfinite(products[j]):
            out[STATUS] = _NOT_FINITE
            return
    score = _fsum(products, N_REGIMES)
    if not math.isfinite(score):
        out[STATUS] = _NOT_FINITE
        return
    if score >= 0:
        probability_up = 1.0 / (1.0 + math.exp(-score))
    else:
        e = math.exp(score)
        probability_up = e / (1.0 + e)
    out[SCORE] = score
    out[PROBABILITY_UP] = probability_up
    out[CONFIDENCE] = max(probability_up, 1.0 - probability_up)
    if probability_up >= 0.5 + entry_edge:
        out[DIRECTION] = 1.0
    elif probability_up <= 0.5 - entry_edge:
        out[DIRECTION] = -1.0
    else:
        out[DIRECTION] = 0.0
