"""Incremental market features: 20 scale-free numbers per tick, O(1) per tick.

The model downstream serves instruments priced 1.1 (EURUSD) and 10,000 (BTC)
alike, so every feature is a ratio, a return or a bounded oscillator, never a
raw price. Each tick costs a constant amount of work: rolling windows are at
most 21 prices long and are re-read from fixed 32-slot ring buffers.

State
-----
The engine's whole memory is ONE flat ``float64`` array of ``STATE_SIZE``
values, so it can be checkpointed to the event store as a list of floats and
restored; replaying the same ticks from a restored state gives bit-identical
features. Layout (index constants below):

=====================  =====================================================
``LAYOUT_VERSION_AT``  layout version (``LAYOUT_VERSION``), checked on restore
``COUNT``              ticks consumed so far (an integer held as a float)
``EMA_12``/``EMA_26``  price EMAs, seeded with the first price
``MACD_SIGNAL``        EMA9 of the relative MACD, seeded with the first MACD
``RSI_AVG_GAIN/LOSS``  Wilder averages of price gains / losses (0 in warm-up)
``ATR``                Wilder average of the true range (0 in warm-up)
``EWMA_VAR``           RiskMetrics variance of log returns
``EWMA_RET``           EMA of one-tick simple returns
``PRICE_RING``         32 slots: price of tick ``i`` at ``PRICE_RING + i % 32``
``SIZE_RING``          32 slots: size of tick ``i``, same slotting
``LOG_RET_RING``       32 slots: ``log(p_i / p_{i-1})`` for ``i >= 1``
=====================  =====================================================

Warm-up and degenerate values
-----------------------------
Until a window holds enough history, and when a denominator is zero (flat
prices, no volume), a feature takes the value that means "no information":

* ``ret_k`` / ``roc_10``: 0 until ``k + 1`` prices are seen.
* EMA gaps, MACD family: no warm-up (EMAs seed with the first price, so they
  start at 0).
* ``rsi_14``: 50 until 15 prices (14 changes) are seen; 50 when the average
  gain and loss are both 0 (flat), 100 when only the loss average is 0.
* ``bb_pctb`` 0.5, ``bb_width`` 0, ``zscore_20`` 0 until 20 prices are seen
  or when the last 20 prices are all equal.
* ``vol_20``: 0 until 21 prices (20 returns). ``ewma_vol``, ``ewma_ret``: 0
  on the first tick, then seeded with the first return.
* ``atr_14``: 0 until 15 prices (14 true ranges).
* ``volume_ratio``: 1 until 20 sizes are seen, and when they are all 0.
* ``stoch_k_14``: 50 (mid-range) until 14 prices, and when they are all equal.
* ``spread_bps``: 0 when bid or ask is absent (NaN) or the mid is not > 0.

Outputs are finite for any finite positive price: a last guard turns NaN into
0 and clamps infinities to the largest float. It only fires when prices within
one window span hundreds of decades, which no market produces.

Inputs are validated upstream (finite, price > 0, size >= 0); the kernels do
not raise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np

from glassbox import GlassboxError

__all__ = [
    "FEATURE_NAMES",
    "N_FEATURES",
    "STATE_SIZE",
    "FeatureEngine",
    "FeatureStateError",
    "features_for_series",
    "new_state",
    "update_features",
    "warm_up",
]

FEATURE_NAMES: tuple[str, ...] = (
    "ret_1", "ret_5", "ret_20", "roc_10",
    "ema_12_gap", "ema_26_gap",
    "macd", "macd_signal", "macd_hist",
    "rsi_14",
    "bb_pctb", "bb_width",
    "vol_20", "ewma_vol",
    "atr_14",
    "volume_ratio",
    "zscore_20",
    "stoch_k_14",
    "spread_bps",
    "ewma_ret",
)
N_FEATURES = 20

# Output slots, in FEATURE_NAMES order.
_RET_1, _RET_5, _RET_20, _ROC_10 = 0, 1, 2, 3
_EMA_12_GAP, _EMA_26_GAP = 4, 5
_MACD, _MACD_SIGNAL, _MACD_HIST = 6, 7, 8
_RSI_14 = 9
_BB_PCTB, _BB_WIDTH = 10, 11
_VOL_20, _EWMA_VOL = 12, 13
_ATR_14 = 14
_VOLUME_RATIO = 15
_ZSCORE_20 = 16
_STOCH_K_14 = 17
_SPREAD_BPS = 18
_EWMA_RET = 19

# State layout (see module docstring).
LAYOUT_VERSION = 1.0
LAYOUT_VERSION_AT = 0
COUNT = 1
EMA_12 = 2
EMA_26 = 3
MACD_SIGNAL = 4
RSI_AVG_GAIN = 5
RSI_AVG_LOSS = 6
ATR = 7
EWMA_VAR = 8
EWMA_RET = 9
RING_SLOTS = 32
PRICE_RING = 10
SIZE_RING = PRICE_RING + RING_SLOTS
LOG_RET_RING = SIZE_RING + RING_SLOTS
STATE_SIZE = LOG_RET_RING + RING_SLOTS

# Scalar state slots the finiteness guard covers; the rings hold inputs and
# bounded log returns and cannot overflow.
_FIRST_SCALAR, _END_SCALAR = EMA_12, EWMA_RET + 1

_ALPHA_12 = 2.0 / 13.0
_ALPHA_26 = 2.0 / 27.0
_ALPHA_9 = 2.0 / 10.0
_ALPHA_10 = 2.0 / 11.0
_RISKMETRICS_LAMBDA = 0.94
_WILDER_N = 14
_BB_WINDOW = 20
_VOL_WINDOW = 20
_VOLUME_WINDOW = 20
_STOCH_WINDOW = 14
_FLOAT_MAX = 1.7976931348623157e308


class FeatureStateError(GlassboxError):
    """A checkpointed feature state cannot be restored.

    Raised by :meth:`FeatureEngine.from_state`; rebuild the features by
    replaying the instrument's ticks from the event store instead.
    """


def new_state() -> np.ndarray:
    """Return a fresh feature state: ``STATE_SIZE`` zeros plus the layout version."""
    state = np.zeros(STATE_SIZE, dtype=np.float64)
    state[LAYOUT_VERSION_AT] = LAYOUT_VERSION
    return state


# ---------------------------------------------------------------- ring access


@numba.njit(cache=True)
def _lagged(state, ring, count, lag):
    """Value ``lag`` ticks before the newest (lag 0) in a 32-slot ring."""
    return state[ring + (count - 1 - lag) % RING_SLOTS]


@numba.njit(cache=True)
def _window_mean_std(state, ring, count, window):
    """Mean and population std of the newest ``window`` ring values.

    Re-read every tick instead of kept as running sums, which drift. Values
    are shifted by the newest one first: this keeps precision and makes an
    all-equal window give a std of exactly 0.
    """
    ref = _lagged(state, ring, count, 0)
    total = 0.0
    for lag in range(window):
        total += _lagged(state, ring, count, lag) - ref
    mean_shift = total / window
    squares = 0.0
    for lag in range(window):
        dev = _lagged(state, ring, count, lag) - ref - mean_shift
        squares += dev * dev
    return ref + mean_shift, math.sqrt(squares / window)


@numba.njit(cache=True)
def _push_tick(state, price, size):
    """Store the tick in the rings, add its log return, return the new count."""
    count = int(state[COUNT])
    slot = count % RING_SLOTS
    if count >= 1:
        previous = state[PRICE_RING + (count - 1) % RING_SLOTS]
        ratio = price / previous
        # log of the ratio is the more precise; the difference of logs only
        # serves when the ratio over/underflows (prices hundreds of decades apart).
        if 0.0 < ratio < math.inf:
            state[LOG_RET_RING + slot] = math.log(ratio)
        else:
            state[LOG_RET_RING + slot] = math.log(price) - math.log(previous)
    state[PRICE_RING + slot] = price
    state[SIZE_RING + slot] = size
    count += 1
    state[COUNT] = count
    return count


# ---------------------------------------------------------- feature families


@numba.njit(cache=True)
def _returns(state, price, count, out):
    """Simple returns over 1/5/20/10 ticks and the EMA of one-tick returns."""
    out[_RET_1] = price / _lagged(state, PRICE_RING, count, 1) - 1.0 if count > 1 else 0.0
    out[_RET_5] = price / _lagged(state, PRICE_RING, count, 5) - 1.0 if count > 5 else 0.0
    out[_RET_20] = price / _lagged(state, PRICE_RING, count, 20) - 1.0 if count > 20 else 0.0
    out[_ROC_10] = price / _lagged(state, PRICE_RING, count, 10) - 1.0 if count > 10 else 0.0
    if count == 2:
        state[EWMA_RET] = out[_RET_1]
    elif count > 2:
        state[EWMA_RET] = _ALPHA_10 * out[_RET_1] + (1.0 - _ALPHA_10) * state[EWMA_RET]
    out[_EWMA_RET] = state[EWMA_RET]


@numba.njit(cache=True)
def _ema(state, price, count, out):
    """Price EMAs 12 and 26 (seeded with the first price) as gaps to price."""
    if count == 1:
        state[EMA_12] = price
        state[EMA_26] = price
    else:
        state[EMA_12] = _ALPHA_12 * price + (1.0 - _ALPHA_12) * state[EMA_12]
        state[EMA_26] = _ALPHA_26 * price + (1.0 - _ALPHA_26) * state[EMA_26]
    out[_EMA_12_GAP] = price / state[EMA_12] - 1.0
    out[_EMA_26_GAP] = price / state[EMA_26] - 1.0


@numba.njit(cache=True)
def _macd(state, price, count, out):
    """MACD relative to price, its EMA9 signal and the histogram.

    Must run after :func:`_ema` has moved the EMAs to this tick.
    """
    macd = (state[EMA_12] - state[EMA_26]) / price
    if count == 1:
        state[MACD_SIGNAL] = macd
    else:
        state[MACD_SIGNAL] = _ALPHA_9 * macd + (1.0 - _ALPHA_9) * state[MACD_SIGNAL]
    out[_MACD] = macd
    out[_MACD_SIGNAL] = state[MACD_SIGNAL]
    out[_MACD_HIST] = macd - state[MACD_SIGNAL]


@numba.njit(cache=True)
def _wilder_seed_means(state, count):
    """Means of the first 14 gains, losses and true ranges, from the ring.

    Called on the 15th tick, when the ring still holds every price so far;
    this spares the state three warm-up accumulators.
    """
    gains = 0.0
    losses = 0.0
    ranges = 0.0
    for lag in range(_WILDER_N):
        change = _lagged(state, PRICE_RING, count, lag) - _lagged(state, PRICE_RING, count, lag + 1)
        gains += max(change, 0.0)
        losses += max(-change, 0.0)
        ranges += abs(change)
    return gains / _WILDER_N, losses / _WILDER_N, ranges / _WILDER_N


@numba.njit(cache=True)
def _wilder(average, value):
    """Wilder smoothing, written as a convex step so it cannot overflow."""
    return average + (value - average) / _WILDER_N


@numba.njit(cache=True)
def _rsi_atr(state, price, count, out):
    """Wilder RSI(14) on 0..100 and Wilder ATR(14) over price.

    Both share the 14-change warm-up, so they are seeded together. With ticks
    the true range is ``|price_t - price_{t-1}|``.
    """
    if count == _WILDER_N + 1:
        gain, loss, true_range = _wilder_seed_means(state, count)
        state[RSI_AVG_GAIN] = gain
        state[RSI_AVG_LOSS] = loss
        state[ATR] = true_range
    elif count > _WILDER_N + 1:
        change = price - _lagged(state, PRICE_RING, count, 1)
        state[RSI_AVG_GAIN] = _wilder(state[RSI_AVG_GAIN], max(change, 0.0))
        state[RSI_AVG_LOSS] = _wilder(state[RSI_AVG_LOSS], max(-change, 0.0))
        state[ATR] = _wilder(state[ATR], abs(change))
    gain = state[RSI_AVG_GAIN]
    total = gain + state[RSI_AVG_LOSS]
    # Flat history (and the warm-up, where both are 0) reads as neutral 50.
    out[_RSI_14] = 100.0 * gain / total if total > 0.0 else 50.0
    out[_ATR_14] = state[ATR] / price


@numba.njit(cache=True)
def _bollinger(state, price, count, out):
    """Bollinger %b and width (20 ticks, 2 std devs) and the 20-tick z-score."""
    if count < _BB_WINDOW:
        out[_BB_PCTB] = 0.5
        out[_BB_WIDTH] = 0.0
        out[_ZSCORE_20] = 0.0
        return
    mean, std = _window_mean_std(state, PRICE_RING, count, _BB_WINDOW)
    if std == 0.0:
        out[_BB_PCTB] = 0.5
        out[_BB_WIDTH] = 0.0
        out[_ZSCORE_20] = 0.0
        return
    lower = mean - 2.0 * std
    upper = mean + 2.0 * std
    out[_BB_PCTB] = (price - lower) / (upper - lower)
    out[_BB_WIDTH] = (upper - lower) / mean
    out[_ZSCORE_20] = (price - mean) / std


@numba.njit(cache=True)
def _volatility(state, count, out):
    """20-tick std of log returns and the RiskMetrics EWMA volatility."""
    if count >= 2:
        log_ret = _lagged(state, LOG_RET_RING, count, 0)
        squared = log_ret * log_ret
        if count == 2:
            state[EWMA_VAR] = squared
        else:
            state[EWMA_VAR] = (
                _RISKMETRICS_LAMBDA * state[EWMA_VAR] + (1.0 - _RISKMETRICS_LAMBDA) * squared
            )
    out[_EWMA_VOL] = math.sqrt(state[EWMA_VAR])
    # The return ring holds count - 1 returns: 20 of them need 21 prices.
    if count > _VOL_WINDOW:
        out[_VOL_20] = _window_mean_std(state, LOG_RET_RING, count, _VOL_WINDOW)[1]
    else:
        out[_VOL_20] = 0.0


@numba.njit(cache=True)
def _volume(state, size, count, out):
    """Size over the mean size of the last 20 ticks, this one included."""
    if count < _VOLUME_WINDOW:
        out[_VOLUME_RATIO] = 1.0
        return
    total = 0.0
    for lag in range(_VOLUME_WINDOW):
        total += _lagged(state, SIZE_RING, count, lag)
    mean = total / _VOLUME_WINDOW
    # A zero mean means every size, this one included, was 0: nothing unusual.
    out[_VOLUME_RATIO] = size / mean if mean > 0.0 else 1.0


@numba.njit(cache=True)
def _stochastic(state, price, count, out):
    """Stochastic %K over the last 14 prices, on 0..100."""
    if count < _STOCH_WINDOW:
        out[_STOCH_K_14] = 50.0
        return
    low = price
    high = price
    for lag in range(1, _STOCH_WINDOW):
        value = _lagged(state, PRICE_RING, count, lag)
        low = min(low, value)
        high = max(high, value)
    out[_STOCH_K_14] = (price - low) / (high - low) * 100.0 if high > low else 50.0


@numba.njit(cache=True)
def _spread(bid, ask, out):
    """Quoted spread in basis points of the mid; 0 without a two-sided quote."""
    out[_SPREAD_BPS] = 0.0
    if math.isfinite(bid) and math.isfinite(ask):
        # Halves first so two huge quotes cannot overflow the sum.
        mid = 0.5 * bid + 0.5 * ask
        if mid > 0.0:
            out[_SPREAD_BPS] = (ask - bid) / mid * 1e4


@numba.njit(cache=True)
def _finite(value):
    """``value`` if finite, else 0 for NaN and the largest float for ±inf."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return 0.0
    return _FLOAT_MAX if value > 0.0 else -_FLOAT_MAX


@numba.njit(cache=True)
def _guard(state, out):
    """Backstop keeping outputs and state finite for absurd price spans.

    A no-op on market data; it exists so that a window spanning hundreds of
    decades cannot poison the checkpointed state with inf or NaN forever.
    """
    for i in range(N_FEATURES):
        out[i] = _finite(out[i])
    for i in range(_FIRST_SCALAR, _END_SCALAR):
        state[i] = _finite(state[i])


# ------------------------------------------------------------------ public API


@numba.njit(cache=True)
def update_features(state, price, size, bid, ask, out):
    """Consume one tick into ``state`` and write the 20 features into ``out``.

    ``state`` is a ``STATE_SIZE`` float64 array from :func:`new_state` (or a
    restored checkpoint), ``out`` a float64 array of at least ``N_FEATURES``.
    ``bid``/``ask`` are NaN when absent. Pass plain floats: other scalar types
    compile a second specialisation. Never raises; inputs are validated
    upstream (finite, price > 0, size >= 0).
    """
    count = _push_tick(state, price, size)
    _returns(state, price, count, out)
    _ema(state, price, count, out)
    _macd(state, price, count, out)
    _rsi_atr(state, price, count, out)
    _bollinger(state, price, count, out)
    _volatility(state, count, out)
    _volume(state, size, count, out)
    _stochastic(state, price, count, out)
    _spread(bid, ask, out)
    _guard(state, out)


@numba.njit(cache=True)
def features_for_series(prices, sizes, bids, asks):
    """Features of a whole tick series from a fresh state, shape ``(n, 20)``.

    For model training: row ``i`` equals what :meth:`FeatureEngine.update`
    returns for tick ``i``, bit for bit. The four inputs are float64 arrays of
    the same length, ``bids``/``asks`` NaN where absent.
    """
    n = prices.shape[0]
    features = np.empty((n, N_FEATURES), dtype=np.float64)
    state = np.zeros(STATE_SIZE, dtype=np.float64)
    state[LAYOUT_VERSION_AT] = LAYOUT_VERSION
    for i in range(n):
        update_features(state, prices[i], sizes[i], bids[i], asks[i], features[i])
    return features


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel once.

    Call at start-up so the first live tick does not pay for compilation.
    """
    state = new_state()
    out = np.empty(N_FEATURES, dtype=np.float64)
    update_features(state, 1.0, 1.0, math.nan, math.nan, out)
    one = np.ones(1, dtype=np.float64)
    features_for_series(one, one, one, one)


class FeatureEngine:
    """One instrument's incremental feature computer.

    Holds the flat state array and one reusable output buffer. Not
    thread-safe: an engine belongs to the actor that feeds it ticks.
    """

    __slots__ = ("_out", "_state")

    def __init__(self) -> None:
        """Start from a fresh state (no ticks seen)."""
        self._state = new_state()
        self._out = np.zeros(N_FEATURES, dtype=np.float64)

    @property
    def ticks(self) -> int:
        """Number of ticks consumed since the fresh state."""
        return int(self._state[COUNT])

    def update(
        self, price: float, size: float, bid: float = math.nan, ask: float = math.nan
    ) -> np.ndarray:
        """Consume one tick and return the 20 features in ``FEATURE_NAMES`` order.

        The returned array is the engine's output buffer, overwritten by the
        next call: copy it if you keep it. Inputs must already be validated
        (finite, ``price > 0``, ``size >= 0``; bid/ask NaN when absent).
        """
        update_features(self._state, float(price), float(size), float(bid), float(ask), self._out)
        return self._out

    def state_list(self) -> list[float]:
        """The whole state as ``STATE_SIZE`` floats, for a checkpoint event."""
        return self._state.tolist()

    @classmethod
    def from_state(cls, values: Sequence[float]) -> FeatureEngine:
        """Restore an engine from :meth:`state_list` output.

        Raises :class:`FeatureStateError` when the values have the wrong
        length or layout version, are not finite, or carry a bad tick count.
        """
        state = np.array(values, dtype=np.float64)
        if state.shape != (STATE_SIZE,):
            raise FeatureStateError(
                f"feature state has shape {state.shape}, expected ({STATE_SIZE},): "
                "replay the ticks from the event store to rebuild it"
            )
        if state[LAYOUT_VERSION_AT] != LAYOUT_VERSION:
            raise FeatureStateError(
                f"feature state layout version {state[LAYOUT_VERSION_AT]!r}, this code "
                f"reads {LAYOUT_VERSION!r}: replay the ticks from the event store to rebuild it"
            )
        count = state[COUNT]
        if not np.all(np.isfinite(state)) or count < 0 or count != math.floor(count):
            raise FeatureStateError(
                "feature state holds non-finite values or a bad tick count: "
                "replay the ticks from the event store to rebuild it"
            )
        engine = cls()
        engine._state = state
        return engine
