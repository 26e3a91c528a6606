"""Online market-regime filter: a 3-state Gaussian HMM run forward one tick at a time.

The caller standardises each one-tick return by its rolling volatility (``z``)
and feeds it to :class:`RegimeFilter`, which keeps the filtered probabilities
P(regime_t | z_1..z_t). The step itself is the Numba kernel :func:`regime_step`
so the hot path can call it without Python overhead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from aggregates.errors import InvalidRegimeModel, InvalidRegimeState

__all__ = ["REGIMES", "RegimeFilter", "RegimeModel", "regime_step"]

REGIMES: tuple[str, str, str] = ("bull", "bear", "sideways")

_N = len(REGIMES)
_ROW_SUM_TOLERANCE = 1e-9
_SQRT_2PI = math.sqrt(2.0 * math.pi)

# Sticky: a regime persists ~1/(1 - 0.98) = 50 ticks on average.
_DEFAULT_TRANSITION = (
    (0.98, 0.01, 0.01),
    (0.01, 0.98, 0.01),
    (0.01, 0.01, 0.98),
)


def _as_float_tuple(values: Sequence[float], name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise InvalidRegimeModel(f"{name} must be {_N} numbers, got {values!r}") from exc
    if len(out) != _N:
        raise InvalidRegimeModel(f"{name} must have {_N} entries (one per regime {REGIMES}), got {len(out)}")
    if not all(math.isfinite(v) for v in out):
        raise InvalidRegimeModel(f"{name} must be finite, got {out}")
    return out


def _check_distribution(values: tuple[float, ...], name: str) -> None:
    if any(v < 0.0 for v in values):
        raise InvalidRegimeModel(f"{name} must be non-negative, got {values}")
    total = math.fsum(values)
    if abs(total - 1.0) > _ROW_SUM_TOLERANCE:
        raise InvalidRegimeModel(f"{name} must sum to 1 (got {total!r}): normalise it before building the model")


def _frozen_array(values: Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    array = np.ascontiguousarray(values, dtype=np.float64)
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class RegimeModel:
    """Parameters of the 3-state regime HMM, in :data:`REGIMES` order.

    ``transition[i][j]`` is P(regime j at t | regime i at t-1). Emissions are
    Gaussian in the *standardised* one-tick return z (return / rolling volatility).
    The defaults are sticky (0.98 on the diagonal): regimes last ~50 ticks.
    Fields accept any sequences and are stored as tuples of floats.

    Raises:
        InvalidRegimeModel: wrong shapes, non-finite values, negative
            probabilities, rows of ``transition`` or ``initial`` not summing
            to 1 (within 1e-9), or a std that is not > 0.
    """

    transition: tuple[tuple[float, ...], ...] = _DEFAULT_TRANSITION
    means: tuple[float, ...] = (0.25, -0.25, 0.0)
    stds: tuple[float, ...] = (1.0, 1.1, 0.6)
    initial: tuple[float, ...] = (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0)
    # Contiguous read-only copies handed to the Numba kernel, built once here
    # so the per-tick path never converts.
    _trans: np.ndarray = field(init=False, repr=False, compare=False)
    _means: np.ndarray = field(init=False, repr=False, compare=False)
    _stds: np.ndarray = field(init=False, repr=False, compare=False)
    _initial: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            rows = tuple(self.transition)
        except TypeError as exc:
            raise InvalidRegimeModel(f"transition must be a {_N}x{_N} matrix, got {self.transition!r}") from exc
        if len(rows) != _N:
            raise InvalidRegimeModel(f"transition must have {_N} rows, got {len(rows)}")
        transition = tuple(_as_float_tuple(row, f"transition row {i}") for i, row in enumerate(rows))
        for i, row in enumerate(transition):
            _check_distribution(row, f"transition row {i} ({REGIMES[i]})")
        means = _as_float_tuple(self.means, "means")
        stds = _as_float_tuple(self.stds, "stds")
        if any(s <= 0.0 for s in stds):
            raise InvalidRegimeModel(f"stds must be > 0, got {stds}")
        initial = _as_float_tuple(self.initial, "initial")
        _check_distribution(initial, "initial")
        for name, value in (("transition", transition), ("means", means), ("stds", stds), ("initial", initial)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_trans", _frozen_array(transition))
        object.__setattr__(self, "_means", _frozen_array(means))
        object.__setattr__(self, "_stds", _frozen_array(stds))
        object.__setattr__(self, "_initial", _frozen_array(initial))


@njit(cache=True)
def _predict(prev_probs, trans, out):  # pragma: no cover - compiled
    n = out.shape[0]
    for j in range(n):
        acc = 0.0
        for i in range(n):
            acc += prev_probs[i] * trans[i, j]
        out[j] = acc


@njit(cache=True)
def _normalise(out):  # pragma: no cover - compiled
    total = 0.0
    for j in range(out.shape[0]):
        total += out[j]
    if total > 0.0 and np.isfinite(total):
        for j in range(out.shape[0]):
            out[j] /= total


@njit(cache=True)
def _entropy(probs):  # pragma: no cover - compiled
    h = 0.0
    for j in range(probs.shape[0]):
        p = probs[j]
        if p > 0.0:
            h -= p * np.log(p)
    return h


@njit(cache=True)
def regime_step(prev_probs, z, trans, means, stds, out):  # pragma: no cover - compiled
    """One forward-filter step; writes P(regime | z_1..z_t) to ``out``, returns its entropy (nats).

    Predicts with ``trans`` (``out[j] = sum_i prev_probs[i] * trans[i, j]``),
    multiplies by the Gaussian likelihood of ``z`` under each regime and
    normalises. A non-finite ``z`` (no usable return this tick) does the
    prediction step only. If every likelihood underflows (|z| beyond ~40
    standard deviations) or the normalising sum is not finite, the predicted
    probabilities are kept, so one absurd tick cannot zero the distribution.

    ``out`` must not alias ``prev_probs``; all arrays are float64 and
    nothing is allocated. Raises nothing; garbage in (NaN probabilities)
    gives NaN out.
    """
    _predict(prev_probs, trans, out)
    if np.isfinite(z):
        total = 0.0
        for j in range(out.shape[0]):
            u = (z - means[j]) / stds[j]
            out[j] *= np.exp(-0.5 * u * u) / (stds[j] * _SQRT_2PI)
            total += out[j]
        if total > 0.0 and np.isfinite(total):
            for j in range(out.shape[0]):
                out[j] /= total
            return _entropy(out)
        # Underflow: the observation carries no usable information.
        _predict(prev_probs, trans, out)
    # The prediction sums to 1 only up to rounding; renormalising keeps long
    # runs of missing ticks from drifting.
    _normalise(out)
    return _entropy(out)


def _validated_probs(probs: Sequence[float]) -> np.ndarray:
    try:
        values = np.array([float(p) for p in probs], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidRegimeState(f"regime probabilities must be {_N} numbers, got {probs!r}") from exc
    if values.shape != (_N,) or not np.all(np.isfinite(values)) or np.any(values < 0.0):
        raise InvalidRegimeState(f"regime probabilities must be {_N} finite non-negative numbers, got {probs!r}")
    total = math.fsum(values.tolist())
    if abs(total - 1.0) > 1e-6:
        raise InvalidRegimeState(f"regime probabilities must sum to 1, got {total!r} from {probs!r}")
    return values / total


class RegimeFilter:
    """Stateful forward filter over one instrument's standardised returns.

    Starts from ``probs`` (a restored state, e.g. the ``probs`` of an earlier
    filter as a list of 3 floats) or, if ``None``, from ``model.initial``. The
    starting probabilities are treated as the regime of the *previous* tick,
    so the first :meth:`update` predicts once before weighing its ``z``.
    Not thread-safe: one filter per desk.

    Raises:
        InvalidRegimeState: ``probs`` is not 3 finite non-negative numbers summing to 1 (within 1e-6).
    """

    def __init__(self, model: RegimeModel, probs: Sequence[float] | None = None) -> None:
        self.model = model
        self._probs = model._initial.copy() if probs is None else _validated_probs(probs)
        # Second buffer: regime_step may not write over its input, so the two swap each tick.
        self._scratch = np.empty(_N, dtype=np.float64)

    @property
    def probs(self) -> np.ndarray:
        """A copy of the current regime probabilities, in :data:`REGIMES` order."""
        return self._probs.copy()

    @property
    def most_likely(self) -> str:
        """The name of the currently most probable regime."""
        return REGIMES[int(np.argmax(self._probs))]

    def state(self) -> list[float]:
        """The probabilities as plain floats, for storing and restoring via ``RegimeFilter(model, probs=...)``."""
        return [float(p) for p in self._probs]

    def update(self, z: float) -> tuple[np.ndarray, float]:
        """Advance one tick with standardised return ``z`` (NaN: no observation).

        Returns a copy of the new probabilities and their Shannon entropy in
        nats (0 = certain, ln 3 = no idea). Raises nothing.
        """
        model = self.model
        entropy = regime_step(self._probs, float(z), model._trans, model._means, model._stds, self._scratch)
        self._probs, self._scratch = self._scratch, self._probs
        return self._probs.copy(), float(entropy)
