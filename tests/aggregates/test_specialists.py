"""Fitting the regime specialists and evaluating them as one compiled set."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from aggregates.errors import FeatureMismatch, TrainingDataError, UnsupportedModel
from aggregates.regime import REGIMES
from aggregates.specialists import (
    MIN_SPECIALIST_ROWS,
    SpecialistSet,
    fallback_regimes,
    fit_specialists,
)
from tests.aggregates.specialist_data import FEATURE_NAMES, regime_data

SMALL = {"n_estimators": 20, "max_depth": 2}


def training_rows(model: GradientBoostingClassifier) -> int:
    # With subsample=1.0 every tree's root sees every training row.
    return int(model.estimators_[0, 0].tree_.n_node_samples[0])


@pytest.fixture(scope="module")
def models() -> dict[str, GradientBoostingClassifier]:
    X, y, regime = regime_data(1_500, seed=0)
    return fit_specialists(X, y, regime, seed=42)


def test_one_specialist_per_regime_fitted_on_its_rows(models) -> None:
    assert tuple(models) == REGIMES
    for model in models.values():
        assert (model.n_estimators, model.max_depth, model.learning_rate) == (100, 3, 0.05)
        assert training_rows(model) == 500
    # Each specialist learned its own regime's driver.
    assert np.argmax(models["bull"].feature_importances_) == 0
    assert np.argmax(models["bear"].feature_importances_) == 1


def test_same_data_and_seed_give_identical_models() -> None:
    X, y, regime = regime_data(900, seed=1)
    first = fit_specialists(X, y, regime, seed=7, **SMALL)
    second = fit_specialists(X, y, regime, seed=7, **SMALL)
    for name in REGIMES:
        np.testing.assert_array_equal(first[name].decision_function(X), second[name].decision_function(X))


def test_small_or_one_class_regimes_train_on_all_rows() -> None:
    X, y, regime = regime_data(0, seed=2, counts=(1_000, MIN_SPECIALIST_ROWS - 1, 400))
    y[regime == 2] = 1  # sideways: one label only
    assert fallback_regimes(y, regime) == ("bear", "sideways")
    models = fit_specialists(X, y, regime, seed=3, **SMALL)
    assert [training_rows(models[name]) for name in REGIMES] == [1_000, len(y), len(y)]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda X, y, r: (X[:, :1].ravel(), y, r), "2-D"),
        (lambda X, y, r: (X, y[:-1], r), "one entry per row"),
        (lambda X, y, r: (np.where(X > 2.5, np.nan, X), y, r), "NaN"),
        (lambda X, y, r: (X, y * 2, r), "labels 0"),
        (lambda X, y, r: (X, np.ones_like(y), r), "labels 0"),
        (lambda X, y, r: (X, y, r + 1), "indices"),
        (lambda X, y, r: (X, y, r.astype(float)), "indices"),
    ],
)
def test_bad_training_data_is_refused(change, message: str) -> None:
    X, y, regime = regime_data(600, seed=4)
    with pytest.raises(TrainingDataError, match=message):
        fit_specialists(*change(X, y, regime), seed=0, **SMALL)


def test_specialist_set_margins_match_each_decision_function(models) -> None:
    specialists = SpecialistSet.from_estimators(models, "test", FEATURE_NAMES)
    X, _, _ = regime_data(300, seed=5)
    out = np.empty(3)
    expected = np.column_stack([models[name].decision_function(X) for name in REGIMES])
    for x, row in zip(X, expected):
        specialists.margins(x, out)
        np.testing.assert_allclose(out, row, atol=1e-12, rtol=0)
    assert specialists.forest("bear") is specialists.forests[1]
    assert specialists.feature_names == FEATURE_NAMES


def test_specialist_set_refuses_mismatches(models) -> None:
    with pytest.raises(FeatureMismatch):
        SpecialistSet.from_estimators(models, "test", FEATURE_NAMES[:-1])
    with pytest.raises(UnsupportedModel):
        SpecialistSet.from_estimators({"bull": models["bull"]}, "test", FEATURE_NAMES)
    specialists = SpecialistSet.from_estimators(models, "test", FEATURE_NAMES)
    with pytest.raises(FeatureMismatch):
        specialists.margins(np.zeros(len(FEATURE_NAMES) - 1), np.empty(3))
    with pytest.raises(KeyError):
        specialists.forest("crab")
