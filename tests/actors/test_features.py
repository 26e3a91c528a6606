"""Tests for actors.features against plain NumPy references.

The references below are written from the feature definitions, not from the
kernels: whole-series NumPy (sliding windows, np.std, np.mean) or a plain
Python loop where the definition itself is recursive (EMAs, Wilder).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from actors.features import (
    FEATURE_NAMES,
    N_FEATURES,
    STATE_SIZE,
    FeatureEngine,
    FeatureStateError,
    features_for_series,
    new_state,
    warm_up,
)

N_TICKS = 2_000
SCALES = (1.1, 100.0, 10_000.0)


# ------------------------------------------------------------------ fixtures


def synthetic_ticks(base: float, seed: int = 7) -> tuple[np.ndarray, ...]:
    """Random walk with flat stretches, a gap, random sizes, half quoted."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 1e-3, N_TICKS)
    steps[rng.random(N_TICKS) < 0.15] = 0.0  # repeated prices
    steps[200:260] = 0.0  # flat longer than every window
    steps[900:925] = 0.0
    steps[1200] = 0.05  # a gap
    steps[0] = 0.0
    prices = base * np.exp(np.cumsum(steps))
    sizes = rng.exponential(3.0, N_TICKS)
    sizes[rng.random(N_TICKS) < 0.1] = 0.0
    sizes[1500:1530] = 0.0  # a volume window of nothing but zeros
    quoted = rng.random(N_TICKS) < 0.5
    half_spread = prices * rng.uniform(0.5e-4, 5e-4, N_TICKS)
    bids = np.where(quoted, prices - half_spread, np.nan)
    asks = np.where(quoted, prices + half_spread, np.nan)
    return prices, sizes, bids, asks


def ema(values: np.ndarray, n: int) -> np.ndarray:
    """EMA with alpha 2/(n+1) seeded with the first value."""
    alpha = 2.0 / (n + 1)
    result = np.empty_like(values)
    result[0] = values[0]
    for i in range(1, len(values)):
        result[i] = alpha * values[i] + (1 - alpha) * result[i - 1]
    return result


def trailing(values: np.ndarray, window: int, offset: int, fill: float, fn) -> np.ndarray:
    """Apply ``fn`` to trailing windows; the first full one ends at tick ``offset``."""
    result = np.full(N_TICKS, fill)
    result[offset:] = fn(sliding_window_view(values, window))
    return result


def wilder(series: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder average of per-change values; index i is tick i + 1; NaN in warm-up."""
    result = np.full(len(series), np.nan)
    result[n - 1] = series[:n].mean()
    for i in range(n, len(series)):
        result[i] = (result[i - 1] * (n - 1) + series[i]) / n
    return result


def reference(prices, sizes, bids, asks) -> dict[str, np.ndarray]:
    """All 20 features computed the slow, obvious way."""
    p = prices
    ref: dict[str, np.ndarray] = {}
    for name, k in (("ret_1", 1), ("ret_5", 5), ("ret_20", 20), ("roc_10", 10)):
        ref[name] = np.zeros(N_TICKS)
        ref[name][k:] = p[k:] / p[:-k] - 1
    ema12, ema26 = ema(p, 12), ema(p, 26)
    ref["ema_12_gap"] = p / ema12 - 1
    ref["ema_26_gap"] = p / ema26 - 1
    ref["macd"] = (ema12 - ema26) / p
    ref["macd_signal"] = ema(ref["macd"], 9)
    ref["macd_hist"] = ref["macd"] - ref["macd_signal"]

    change = np.diff(p)
    gain, loss = wilder(np.maximum(change, 0)), wilder(np.maximum(-change, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(loss > 0, 100 - 100 / (1 + gain / loss), 100.0)
    rsi = np.where((gain == 0) & (loss == 0), 50.0, rsi)
    ref["rsi_14"] = np.concatenate([[50.0], np.where(np.isnan(gain), 50.0, rsi)])

    mean20 = trailing(p, 20, 19, np.nan, lambda w: w.mean(axis=1))
    std20 = trailing(p, 20, 19, np.nan, lambda w: w.std(axis=1))
    flat20 = trailing(p, 20, 19, 1.0, lambda w: w.max(axis=1) == w.min(axis=1)).astype(bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower, upper = mean20 - 2 * std20, mean20 + 2 * std20
        ref["bb_pctb"] = np.where(flat20, 0.5, (p - lower) / (upper - lower))
        ref["bb_width"] = np.where(flat20, 0.0, (upper - lower) / mean20)
        ref["zscore_20"] = np.where(flat20, 0.0, (p - mean20) / std20)

    log_ret = np.diff(np.log(p))
    ref["vol_20"] = trailing(log_ret, 20, 20, 0.0, lambda w: w.std(axis=1))
    variance = np.zeros(N_TICKS)
    variance[1] = log_ret[0] ** 2
    for t in range(2, N_TICKS):
        variance[t] = 0.94 * variance[t - 1] + 0.06 * log_ret[t - 1] ** 2
    ref["ewma_vol"] = np.sqrt(variance)
    atr = wilder(np.abs(change))
    ref["atr_14"] = np.concatenate([[0.0], np.nan_to_num(atr, nan=0.0)]) / p

    mean_size = trailing(sizes, 20, 19, np.nan, lambda w: w.mean(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mean_size > 0, sizes / mean_size, 1.0)
    ref["volume_ratio"] = np.where(np.isnan(mean_size), 1.0, ratio)
    low14 = trailing(p, 14, 13, np.nan, lambda w: w.min(axis=1))
    high14 = trailing(p, 14, 13, np.nan, lambda w: w.max(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ref["stoch_k_14"] = np.where(high14 > low14, (p - low14) / (high14 - low14) * 100, 50.0)
    quoted = ~np.isnan(bids) & ~np.isnan(asks)
    with np.errstate(invalid="ignore"):
        ref["spread_bps"] = np.where(quoted, (asks - bids) / ((asks + bids) / 2) * 1e4, 0.0)

    simple_ret = p[1:] / p[:-1] - 1
    ref["ewma_ret"] = np.concatenate([[0.0], ema(simple_ret, 10)])
    return ref


@pytest.fixture(scope="module", params=SCALES, ids=lambda s: f"price{s:g}")
def scenario(request):
    """Ticks at one price scale, kernel features and reference features."""
    ticks = synthetic_ticks(request.param)
    return ticks, features_for_series(*ticks), reference(*ticks)


# --------------------------------------------------------------------- tests


def test_public_constants():
    assert len(FEATURE_NAMES) == N_FEATURES == 20
    assert len(set(FEATURE_NAMES)) == N_FEATURES
    assert FEATURE_NAMES[0] == "ret_1" and FEATURE_NAMES[-1] == "ewma_ret"
    assert new_state().shape == (STATE_SIZE,)


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_feature_matches_numpy_reference(scenario, name):
    _, features, ref = scenario
    column = features[:, FEATURE_NAMES.index(name)]
    assert np.all(np.isfinite(ref[name])), "reference itself must be finite"
    np.testing.assert_allclose(column, ref[name], rtol=0, atol=1e-9, err_msg=name)


def test_synthetic_series_exercises_degenerate_windows(scenario):
    """Guard against the fixture drifting away from the cases it must cover."""
    (prices, sizes, bids, _), features, _ = scenario
    pctb = features[:, FEATURE_NAMES.index("bb_pctb")]
    assert np.any(pctb[19:] == 0.5), "no flat 20-tick window"
    assert np.any(features[19:, FEATURE_NAMES.index("volume_ratio")] == 1.0)
    assert np.isnan(bids).sum() in range(800, 1200)


def test_update_matches_batch_bit_for_bit(scenario):
    ticks, features, _ = scenario
    engine = FeatureEngine()
    rows = np.array([engine.update(*tick).copy() for tick in zip(*ticks)])
    np.testing.assert_array_equal(rows, features)
    assert engine.ticks == N_TICKS


@pytest.mark.parametrize("split", [1, 15, 33, 1_000, 1_999])
def test_checkpoint_restore_replays_identically(split):
    ticks = list(zip(*synthetic_ticks(100.0, seed=11)))
    uninterrupted = FeatureEngine()
    expected = [uninterrupted.update(*tick).copy() for tick in ticks]

    first = FeatureEngine()
    for tick in ticks[:split]:
        first.update(*tick)
    # Round-trip through JSON as the event store would.
    restored = FeatureEngine.from_state(json.loads(json.dumps(first.state_list())))
    resumed = [restored.update(*tick).copy() for tick in ticks[split:]]

    np.testing.assert_array_equal(np.array(resumed), np.array(expected[split:]))
    assert restored.state_list() == uninterrupted.state_list()


def test_flat_prices_give_neutral_finite_features():
    engine = FeatureEngine()
    for _ in range(100):
        out = engine.update(42.0, 0.0)
    expected = dict.fromkeys(FEATURE_NAMES, 0.0)
    expected.update(rsi_14=50.0, bb_pctb=0.5, volume_ratio=1.0, stoch_k_14=50.0)
    assert dict(zip(FEATURE_NAMES, out.tolist())) == expected


def test_first_tick_is_neutral():
    out = FeatureEngine().update(1.1, 5.0, 1.0999, 1.1001)
    values = dict(zip(FEATURE_NAMES, out.tolist()))
    assert values["rsi_14"] == 50.0 and values["stoch_k_14"] == 50.0
    assert values["ret_1"] == 0.0 and values["ewma_vol"] == 0.0
    assert values["spread_bps"] == pytest.approx(0.0002 / 1.1 * 1e4)


def test_outputs_and_state_stay_finite_for_absurd_price_spans():
    rng = np.random.default_rng(3)
    prices = 10.0 ** rng.uniform(-300, 300, 500)
    sizes = 10.0 ** rng.uniform(-300, 300, 500)
    quotes = np.full(500, np.nan)
    features = features_for_series(prices, sizes, quotes, quotes)
    assert np.all(np.isfinite(features))
    engine = FeatureEngine()
    for price, size in zip(prices, sizes):
        engine.update(price, size, 1e-300, 1e308)
    assert all(math.isfinite(v) for v in engine.state_list())
    assert np.all(np.isfinite(engine.update(1.0, 1.0)))


def test_from_state_rejects_bad_checkpoints():
    good = FeatureEngine().state_list()
    with pytest.raises(FeatureStateError, match="replay the ticks"):
        FeatureEngine.from_state(good[:-1])
    with pytest.raises(FeatureStateError, match="layout version"):
        FeatureEngine.from_state([99.0] + good[1:])
    with pytest.raises(FeatureStateError, match="tick count"):
        FeatureEngine.from_state([good[0], 1.5] + good[2:])
    with pytest.raises(FeatureStateError, match="non-finite"):
        FeatureEngine.from_state(good[:-1] + [math.nan])


def test_warm_up_compiles_without_touching_engines():
    warm_up()
    assert FeatureEngine().ticks == 0
