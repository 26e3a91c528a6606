"""CompiledForest reproduces scikit-learn's gradient-boosted classifier exactly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from aggregates.errors import FeatureMismatch, UnsupportedModel
from aggregates.trees import ARRAY_NAMES, CompiledForest, ForestStack

N_FEATURES = 20


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    signal = X[:, 0] - 0.7 * X[:, 1] + 0.5 * X[:, 2] * X[:, 3] + np.sin(2 * X[:, 4])
    return X, (signal + rng.normal(scale=0.8, size=n) > 0).astype(np.int64)


@pytest.fixture(scope="module")
def model() -> GradientBoostingClassifier:
    X, y = synthetic(3_000, seed=0)
    return GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(X, y)


def split_thresholds(model: GradientBoostingClassifier) -> dict[int, np.ndarray]:
    """Every split threshold of the model, per feature."""
    by_feature: dict[int, list[float]] = {}
    for estimator in model.estimators_[:, 0]:
        tree = estimator.tree_
        for feature, threshold in zip(tree.feature, tree.threshold):
            if feature >= 0:
                by_feature.setdefault(int(feature), []).append(float(threshold))
    return {f: np.unique(values) for f, values in by_feature.items()}


@pytest.fixture(scope="module")
def X_test(model: GradientBoostingClassifier) -> np.ndarray:
    """5,000 rows: 4,000 ordinary ones and 1,000 whose split features sit exactly on thresholds."""
    rng = np.random.default_rng(1)
    X, _ = synthetic(5_000, seed=2)
    on_threshold = X[4_000:]
    for feature, thresholds in split_thresholds(model).items():
        as_float32 = thresholds.astype(np.float32).astype(np.float64)
        pool = np.concatenate(
            [thresholds, as_float32, np.nextafter(thresholds, np.inf), np.nextafter(as_float32, -np.inf)]
        )
        column = rng.choice(pool, size=len(on_threshold))
        column[: len(thresholds)] = thresholds  # every exact threshold at least once
        on_threshold[:, feature] = column
    return X


def naive_float64_margins(model: GradientBoostingClassifier, X: np.ndarray) -> np.ndarray:
    """What a float64 comparison (the tempting bug) would compute."""
    margins = np.full(len(X), model._raw_predict_init(X[:1])[0, 0])
    rows = np.arange(len(X))
    for estimator in model.estimators_[:, 0]:
        tree = estimator.tree_
        node = np.zeros(len(X), dtype=np.int64)
        while (inner := tree.children_left[node] != -1).any():
            left = X[rows, tree.feature[node]] <= tree.threshold[node]
            step = np.where(left, tree.children_left[node], tree.children_right[node])
            node = np.where(inner, step, node)
        margins += model.learning_rate * tree.value[node, 0, 0]
    return margins


def test_threshold_rows_exercise_the_float32_comparison(model, X_test) -> None:
    # Guards the test data: without the float32 cast some of these rows go the other way.
    naive = naive_float64_margins(model, X_test)
    assert np.abs(naive - model.decision_function(X_test)).max() > 1e-6


def test_probas_match_predict_proba(model, X_test) -> None:
    forest = CompiledForest.from_sklearn(model)
    np.testing.assert_allclose(forest.probas(X_test), model.predict_proba(X_test)[:, 1], atol=1e-12, rtol=0)


def test_margins_match_decision_function(model, X_test) -> None:
    forest = CompiledForest.from_sklearn(model)
    np.testing.assert_allclose(forest.margins(X_test), model.decision_function(X_test), atol=1e-12, rtol=0)


def test_single_row_evaluation_matches_batch(model, X_test) -> None:
    forest = CompiledForest.from_sklearn(model)
    margins, probas = forest.margins(X_test), forest.probas(X_test)
    for i in range(3_990, 4_030):
        x = np.ascontiguousarray(X_test[i])
        assert forest.margin(x) == margins[i]
        assert forest.proba_up(x) == pytest.approx(probas[i], abs=1e-15)
        assert isinstance(forest.margin(x), float)


def test_round_trip_through_arrays(model, X_test, tmp_path) -> None:
    forest = CompiledForest.from_sklearn(model)
    arrays = forest.to_arrays()
    assert tuple(arrays) == ARRAY_NAMES
    np.savez(tmp_path / "forest.npz", **arrays)
    with np.load(tmp_path / "forest.npz") as stored:
        restored = CompiledForest.from_arrays({name: stored[name] for name in stored.files})
    for name, array in restored.to_arrays().items():
        np.testing.assert_array_equal(array, arrays[name])
    np.testing.assert_array_equal(restored.margins(X_test), forest.margins(X_test))
    assert (restored.n_trees, restored.n_features) == (100, N_FEATURES)


def test_zero_init_is_supported() -> None:
    X, y = synthetic(500, seed=3)
    model = GradientBoostingClassifier(n_estimators=20, init="zero", random_state=0).fit(X, y)
    forest = CompiledForest.from_sklearn(model)
    assert forest.init == 0.0
    np.testing.assert_allclose(forest.margins(X), model.decision_function(X), atol=1e-12, rtol=0)


def test_forest_stack_matches_each_forest(model, X_test) -> None:
    X, y = synthetic(800, seed=4)
    other = GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=1).fit(X, y)
    forests = [CompiledForest.from_sklearn(model), CompiledForest.from_sklearn(other)]
    stack = ForestStack(forests)
    out = np.empty(2)
    for x in X_test[3_995:4_005]:
        stack.margins(x, out)
        assert out.tolist() == [forests[0].margin(x), forests[1].margin(x)]
    with pytest.raises(FeatureMismatch):
        stack.margins(X_test[0, :5], out)
    with pytest.raises(FeatureMismatch):
        stack.margins(X_test[0], np.empty(3))


def test_unsupported_models_are_refused() -> None:
    X, y = synthetic(300, seed=5)
    with pytest.raises(UnsupportedModel, match="not fitted"):
        CompiledForest.from_sklearn(GradientBoostingClassifier())
    with pytest.raises(UnsupportedModel, match="binary"):
        CompiledForest.from_sklearn(GradientBoostingClassifier(n_estimators=5).fit(X, y + (X[:, 5] > 1)))
    with pytest.raises(UnsupportedModel, match="log_loss"):
        CompiledForest.from_sklearn(GradientBoostingClassifier(n_estimators=5, loss="exponential").fit(X, y))
    with pytest.raises(UnsupportedModel, match="init"):
        CompiledForest.from_sklearn(GradientBoostingClassifier(n_estimators=5, init=LogisticRegression()).fit(X, y))
    with pytest.raises(UnsupportedModel, match="GradientBoostingClassifier"):
        CompiledForest.from_sklearn(LogisticRegression().fit(X, y))  # type: ignore[arg-type]


def test_inconsistent_arrays_are_refused(model) -> None:
    arrays = CompiledForest.from_sklearn(model).to_arrays()
    with pytest.raises(UnsupportedModel, match="missing"):
        CompiledForest.from_arrays({k: v for k, v in arrays.items() if k != "threshold"})
    looping = dict(arrays, children_left=arrays["children_left"].copy())
    looping["children_left"][0] = 0  # a node that is its own child would walk forever
    with pytest.raises(UnsupportedModel, match="forward"):
        CompiledForest.from_arrays(looping)
    wide = dict(arrays, feature=arrays["feature"].copy())
    wide["feature"][0] = N_FEATURES
    with pytest.raises(UnsupportedModel, match="features"):
        CompiledForest.from_arrays(wide)


def test_wrong_feature_count_is_refused(model) -> None:
    forest = CompiledForest.from_sklearn(model)
    with pytest.raises(FeatureMismatch):
        forest.margins(np.zeros((3, N_FEATURES - 1)))
    with pytest.raises(FeatureMismatch):
        forest.margin(np.zeros(N_FEATURES + 1))
