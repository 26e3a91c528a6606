"""Regime specialists: one gradient-boosted "next tick up?" classifier per market regime.

:func:`fit_specialists` trains them (scikit-learn, offline); :class:`SpecialistSet`
holds their compiled forms for the per-tick hot path, where all three raw
margins come out of one Numba call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from aggregates.errors import FeatureMismatch, TrainingDataError, UnsupportedModel
from aggregates.regime import REGIMES
from aggregates.trees import CompiledForest, ForestStack

__all__ = ["MIN_SPECIALIST_ROWS", "SpecialistSet", "fallback_regimes", "fit_specialists"]

MIN_SPECIALIST_ROWS = 200
"""Fewest rows of a regime for a specialist of its own; below it the regime trains on all rows."""


def _training_arrays(X: np.ndarray, y: np.ndarray, regime: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    regime = np.asarray(regime)
    if X.ndim != 2 or X.shape[0] == 0:
        raise TrainingDataError(f"X must be a non-empty 2-D array (rows x features), got shape {X.shape}")
    if y.shape != (X.shape[0],) or regime.shape != (X.shape[0],):
        raise TrainingDataError(
            f"y and regime must be 1-D with one entry per row of X ({X.shape[0]}), got {y.shape} and {regime.shape}"
        )
    if not np.isfinite(X).all():
        raise TrainingDataError("X contains NaN or infinite values: drop or fill those rows before training")
    if not np.isin(y, (0, 1)).all() or np.unique(y).size != 2:
        raise TrainingDataError("y must contain both labels 0 (not up) and 1 (up), and nothing else")
    if not np.issubdtype(regime.dtype, np.integer) or regime.min() < 0 or regime.max() >= len(REGIMES):
        raise TrainingDataError(f"regime must hold integer indices into {REGIMES} (0..{len(REGIMES) - 1})")
    return X, y.astype(np.int64), regime.astype(np.int64)


def fallback_regimes(y: np.ndarray, regime: np.ndarray, min_rows: int = MIN_SPECIALIST_ROWS) -> tuple[str, ...]:
    """The regimes that :func:`fit_specialists` trains on *all* rows instead of their own.

    A regime falls back when it has fewer than ``min_rows`` rows or only one
    label among them: a specialist fitted on a sliver would be noise, and a
    one-class fit is not a binary classifier. Record the result in the model
    metadata so a reader knows which specialists are really generalists.
    Raises nothing (inputs are not validated here; :func:`fit_specialists` does).
    """
    y = np.asarray(y)
    regime = np.asarray(regime)
    out = []
    for index, name in enumerate(REGIMES):
        labels = y[regime == index]
        if labels.size < min_rows or np.unique(labels).size < 2:
            out.append(name)
    return tuple(out)


def fit_specialists(
    X: np.ndarray,
    y: np.ndarray,
    regime: np.ndarray,
    seed: int,
    n_estimators: int = 100,
    max_depth: int = 3,
    learning_rate: float = 0.05,
) -> dict[str, GradientBoostingClassifier]:
    """Fit one binary gradient-boosted classifier per regime in :data:`REGIMES`.

    ``y`` holds 0/1 labels (1 = up), ``regime`` an integer index into
    :data:`REGIMES` per row. Each specialist trains on its regime's rows,
    except the regimes named by :func:`fallback_regimes` (fewer than
    :data:`MIN_SPECIALIST_ROWS` rows, or one label only), which train on all
    rows so three models always exist. Every model uses ``random_state=seed``:
    the same data and seed give identical models (and the same registry version).

    Raises:
        TrainingDataError: shapes disagree, X is not finite, y is not 0/1 with
            both labels present, or a regime index is out of range.
    """
    X, y, regime = _training_arrays(X, y, regime)
    fallback = set(fallback_regimes(y, regime))
    models: dict[str, GradientBoostingClassifier] = {}
    for index, name in enumerate(REGIMES):
        rows = slice(None) if name in fallback else regime == index
        model = GradientBoostingClassifier(
            n_estimators=n_estimators,
            max_depth=max_depth,
            learning_rate=learning_rate,
            random_state=seed,
        )
        models[name] = model.fit(X[rows], y[rows])
    return models


class SpecialistSet:
    """The three compiled specialists of one model version, in :data:`REGIMES` order.

    ``feature_names`` names the columns every specialist expects; ``version``
    is the registry's content hash. Never mutated after construction, so one
    set can be shared by every desk thread.

    Raises:
        UnsupportedModel: not exactly one forest per regime.
        FeatureMismatch: a forest's feature count differs from ``len(feature_names)``.
    """

    def __init__(self, forests: Sequence[CompiledForest], version: str, feature_names: Sequence[str]) -> None:
        if len(forests) != len(REGIMES):
            raise UnsupportedModel(f"a SpecialistSet needs one forest per regime {REGIMES}, got {len(forests)}")
        self.forests: tuple[CompiledForest, ...] = tuple(forests)
        self.version = str(version)
        self.feature_names: tuple[str, ...] = tuple(str(name) for name in feature_names)
        widths = {forest.n_features for forest in self.forests}
        if widths != {len(self.feature_names)}:
            raise FeatureMismatch(
                f"specialists take {sorted(widths)} features but {len(self.feature_names)} feature names were given"
            )
        self._stack = ForestStack(self.forests)

    @classmethod
    def from_estimators(
        cls, models: Mapping[str, GradientBoostingClassifier], version: str, feature_names: Sequence[str]
    ) -> SpecialistSet:
        """Compile fitted estimators keyed by regime name.

        Raises:
            UnsupportedModel: a regime is missing or an estimator cannot be compiled.
            FeatureMismatch: feature counts disagree with ``feature_names``.
        """
        missing = [name for name in REGIMES if name not in models]
        if missing:
            raise UnsupportedModel(f"no specialist for regimes {missing}: expected one per regime {REGIMES}")
        return cls([CompiledForest.from_sklearn(models[name]) for name in REGIMES], version, feature_names)

    def forest(self, regime: str) -> CompiledForest:
        """The compiled specialist of ``regime``.

        Raises:
            KeyError: ``regime`` is not one of :data:`REGIMES`.
        """
        if regime not in REGIMES:
            raise KeyError(f"unknown regime {regime!r}: expected one of {REGIMES}")
        return self.forests[REGIMES.index(regime)]

    def kernel_arrays(self) -> tuple[np.ndarray, ...]:
        """The compiled forests' arrays, for a kernel that computes the margins inside itself (the policy's)."""
        return self._stack.kernel_arrays()

    def margins(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write the three raw margins (log-odds of "up") for one float64 feature vector into ``out``.

        Allocation-free hot path: one Numba call for all three specialists.

        Raises:
            FeatureMismatch: ``x`` is not 1-D of length ``len(feature_names)`` or ``out`` is not of shape (3,).
        """
        self._stack.margins(x, out)
