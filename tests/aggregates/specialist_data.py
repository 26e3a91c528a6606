"""Synthetic training data for the specialist and registry tests: each regime has its own signal."""

from __future__ import annotations

import numpy as np

N_FEATURES = 20
FEATURE_NAMES = tuple(f"f{i}" for i in range(N_FEATURES))


def regime_data(
    n: int, seed: int, counts: tuple[int, int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` (n x 20), 0/1 labels and regime indices; ``counts`` fixes rows per regime (default equal thirds)."""
    rng = np.random.default_rng(seed)
    counts = counts or (n // 3, n // 3, n - 2 * (n // 3))
    regime = np.repeat(np.arange(3), counts)
    X = rng.normal(size=(len(regime), N_FEATURES))
    # A different feature drives "up" in each regime, so the specialists differ.
    signal = np.choose(regime, [X[:, 0], -X[:, 1], X[:, 2] * X[:, 3]])
    y = (signal + rng.normal(scale=0.7, size=len(regime)) > 0).astype(np.int64)
    return X, y, regime
