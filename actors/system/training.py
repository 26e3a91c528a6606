"""``glassbox train``: fit the three regime specialists on the bundled real bars.

The training set is built with the very code the hot path runs — the same
bars-to-ticks walk, the same Numba feature kernels, the same regime filter —
so a model never sees features computed differently from the ones it will
be asked about. The label is whether the price is higher one bar (four
ticks) later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from actors.features import FEATURE_NAMES, features_for_series
from aggregates.regime import REGIMES, RegimeFilter, RegimeModel
from aggregates.registry import ModelRegistry
from aggregates.specialists import fit_specialists
from edge.feeds import BUNDLED_SYMBOLS, bars_to_ticks, bundled_bars

__all__ = ["TrainingSet", "build_training_set", "train_specialists"]

HORIZON_TICKS = 4
WARM_UP_TICKS = 30
"""Rows dropped at the start of each series: the longest window (MACD's
signal over EMA-26) is not yet meaningful before this."""


@dataclass(frozen=True)
class TrainingSet:
    """Features, labels (1 = price higher ``HORIZON_TICKS`` later) and regime labels."""

    features: np.ndarray
    labels: np.ndarray
    regimes: np.ndarray
    symbols: tuple[str, ...]


def build_training_set(
    symbols: Sequence[str] = BUNDLED_SYMBOLS, regime_model: RegimeModel | None = None
) -> TrainingSet:
    """Features and labels for every bundled symbol, stacked."""
    model = regime_model or RegimeModel()
    parts_x, parts_y, parts_r = [], [], []
    ret_i = FEATURE_NAMES.index("ret_1")
    vol_i = FEATURE_NAMES.index("ewma_vol")
    for symbol in symbols:
        ticks = list(bars_to_ticks(symbol, bundled_bars(symbol)))
        prices = np.array([t.price for t in ticks])
        sizes = np.array([t.size for t in ticks])
        nan = np.full(len(ticks), np.nan)
        x = features_for_series(prices, sizes, nan, nan)
        regimes = _regime_labels(x[:, ret_i], x[:, vol_i], model)
        future = prices[HORIZON_TICKS:] > prices[:-HORIZON_TICKS]
        rows = slice(WARM_UP_TICKS, len(ticks) - HORIZON_TICKS)
        parts_x.append(x[rows])
        parts_y.append(future[WARM_UP_TICKS:].astype(np.int64))
        parts_r.append(regimes[rows])
    return TrainingSet(
        np.vstack(parts_x), np.concatenate(parts_y), np.concatenate(parts_r), tuple(symbols)
    )


def _regime_labels(returns: np.ndarray, vols: np.ndarray, model: RegimeModel) -> np.ndarray:
    # The same standardised return the policy feeds the filter on every tick.
    regime_filter = RegimeFilter(model)
    labels = np.empty(len(returns), dtype=np.int64)
    for i, (r, v) in enumerate(zip(returns, vols)):
        probs, _ = regime_filter.update(r / v if v > 0 else np.nan)
        labels[i] = int(np.argmax(probs))
    return labels


def train_specialists(registry: ModelRegistry, seed: int = 7) -> str:
    """Fit the specialists on the bundled bars and save them; returns the model version.

    The same seed and data give the same version (the registry hashes content).
    """
    data = build_training_set()
    models = fit_specialists(data.features, data.labels, data.regimes, seed=seed)
    counts = {name: int((data.regimes == i).sum()) for i, name in enumerate(REGIMES)}
    metadata = {
        "trained_on": list(data.symbols),
        "rows": int(len(data.labels)),
        "rows_per_regime": counts,
        "label": f"price higher {HORIZON_TICKS} ticks later",
        "seed": seed,
    }
    return registry.save(models, FEATURE_NAMES, metadata)
