"""The tabulated TreeSHAP against shap.TreeExplainer itself (the reference), row by row, to 1e-9."""

from __future__ import annotations

import math

import numpy as np
import shap
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.ensemble import GradientBoostingClassifier

from actors.features import FeatureEngine
from edge.feeds import SyntheticFeed
from projections.forensics import ExplainerCache
from projections.tree_shap import TreeShapTables

EXACT = 1e-9


def feature_rows(rows: int, seed: int) -> np.ndarray:
    engine, vectors = FeatureEngine(), []
    for tick in SyntheticFeed(["TS"], seed=seed).ticks(rows + 50):
        vectors.append(engine.update(tick.price, tick.size, math.nan, math.nan))
    return np.asarray(vectors[50:], dtype=np.float64)


def edge_rows(explainer: shap.TreeExplainer, n_features: int, rng: np.random.Generator) -> np.ndarray:
    """Rows on, just beside and across the float32 rounding of every threshold, and non-finite values."""
    model = explainer.model
    internal = model.children_right >= 0
    thresholds, features = model.thresholds[internal], model.features[internal]
    base = rng.normal(size=(len(thresholds) * 6, n_features))
    for k, (t, f) in enumerate(zip(thresholds, features)):
        t32 = np.float32(t)
        for j, v in enumerate((t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), float(t32),
                               float(np.nextafter(t32, np.float32(np.inf))), float(np.nextafter(t32, np.float32(-np.inf))))):
            base[k * 6 + j, f] = v
    odd = rng.choice(np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 5e-324, 0.0, -0.0, 3.5e38]),
                     size=(500, n_features))
    mixed = rng.normal(size=(500, n_features))
    mask = rng.random(size=mixed.shape) < 0.3
    mixed[mask] = odd[mask]
    return np.vstack([base, odd, mixed])


def assert_equals_shap(explainer: shap.TreeExplainer, X: np.ndarray) -> None:
    tables = TreeShapTables.from_explainer(explainer, X.shape[1])
    assert tables is not None
    reference = np.asarray(explainer.shap_values(X, check_additivity=False))
    ours = tables.shap_values(X)
    assert ours.shape == reference.shape
    worst = np.abs(ours - reference).max(axis=1)
    assert (worst <= EXACT).all(), f"{int((worst > EXACT).sum())} rows differ, worst by {worst.max():g}"


def test_the_deployed_specialists_equal_shap_on_every_row_of_a_large_set(model_registry):
    explainers = ExplainerCache(model_registry).get(model_registry.latest() or "")
    rng = np.random.default_rng(5)
    real = feature_rows(20_000, seed=11)
    for explainer in explainers.explainers:
        assert_equals_shap(explainer, np.vstack([real, edge_rows(explainer, real.shape[1], rng)]))


def test_trees_that_split_on_one_feature_twice_equal_shap():
    # Two features and depth 3: every path splits on some feature again (shap's unwind step).
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2_000, 2))
    y = (np.sin(3 * X[:, 0]) + X[:, 1] ** 2 > 0.5).astype(int)
    model = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0).fit(X, y)
    explainer = shap.TreeExplainer(model)
    assert_equals_shap(explainer, np.vstack([rng.normal(size=(5_000, 2)) * 2, edge_rows(explainer, 2, rng)]))


def test_trees_too_big_to_tabulate_are_left_to_shap(model_registry):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3_000, 4))
    model = GradientBoostingClassifier(n_estimators=3, max_depth=6, random_state=0).fit(X, X[:, 0] > X[:, 1])
    assert TreeShapTables.from_explainer(shap.TreeExplainer(model), 4) is None


FEATURES = 20
_cache: dict[str, ExplainerCache] = {}


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 200), st.just(FEATURES)),
                  elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_any_rows_at_all_equal_shap(model_registry, X):
    # Whatever floats arrive (NaN, inf, subnormal, beyond float32's range), the tables say what shap says.
    cache = _cache.setdefault("deployed", ExplainerCache(model_registry))
    explainers = cache.get(model_registry.latest() or "")
    assert len(explainers.feature_names) == FEATURES
    for explainer, tables in zip(explainers.explainers, explainers.tables):
        assert tables is not None
        reference = np.asarray(explainer.shap_values(X, check_additivity=False))
        assert np.abs(tables.shap_values(X) - reference).max() <= EXACT
