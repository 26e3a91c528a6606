"""The model registry: content-addressed versions, atomic folders, integrity checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from aggregates.errors import InvalidModelMetadata, ModelIntegrityError, ModelNotFound
from aggregates.regime import REGIMES
from aggregates.registry import ModelRegistry
from aggregates.specialists import fit_specialists
from tests.aggregates.specialist_data import FEATURE_NAMES, regime_data

METADATA = {"symbols": ["BTCUSDT"], "from": "2024-01-01", "to": "2024-02-01", "seed": 11}


def fit(seed: int = 11) -> dict[str, GradientBoostingClassifier]:
    X, y, regime = regime_data(1_200, seed=0)
    return fit_specialists(X, y, regime, seed=seed, n_estimators=60)


@pytest.fixture(scope="module")
def models() -> dict[str, GradientBoostingClassifier]:
    return fit()


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def test_save_then_load_reproduces_each_specialist(registry, models) -> None:
    version = registry.save(models, FEATURE_NAMES, METADATA)
    specialists = registry.load(version)
    assert specialists.version == version
    assert specialists.feature_names == FEATURE_NAMES
    X, _, _ = regime_data(300, seed=9)
    expected = np.column_stack([models[name].decision_function(X) for name in REGIMES])
    out = np.empty(3)
    for x, row in zip(X, expected):
        specialists.margins(x, out)
        np.testing.assert_allclose(out, row, atol=1e-12, rtol=0)


def test_folder_layout_and_manifest(registry, models) -> None:
    version = registry.save(models, FEATURE_NAMES, METADATA)
    assert len(version) == 16 and int(version, 16) >= 0
    folder = registry.root / version
    assert sorted(p.name for p in folder.iterdir()) == ["estimators.pkl", "forest.npz", "model.json"]
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["version"] == version
    assert manifest["feature_names"] == list(FEATURE_NAMES)
    assert manifest["metadata"] == METADATA
    assert manifest["training_params"]["bull"]["n_estimators"] == 60
    assert manifest["training_params"]["bear"]["random_state"] == 11
    # No staging folders or temp files left behind.
    assert sorted(p.name for p in registry.root.iterdir()) == sorted(["LATEST", version])


def test_same_data_and_seed_give_the_same_version(registry, models) -> None:
    first = registry.save(models, FEATURE_NAMES, METADATA)
    manifest = (registry.root / first / "model.json").read_bytes()
    second = registry.save(fit(), FEATURE_NAMES, {"note": "refit"})
    assert second == first
    assert registry.versions() == [first]
    assert (registry.root / first / "model.json").read_bytes() == manifest  # re-saving rewrote nothing


def test_feature_names_are_part_of_the_version(registry, models) -> None:
    renamed = tuple(f"x{i}" for i in range(len(FEATURE_NAMES)))
    assert registry.save(models, FEATURE_NAMES, {}) != registry.save(models, renamed, {})


def test_latest_and_versions_follow_save_order(registry, models) -> None:
    assert registry.latest() is None and registry.versions() == []
    first = registry.save(models, FEATURE_NAMES, METADATA)
    second = registry.save(fit(seed=12), FEATURE_NAMES, METADATA)
    assert first != second
    assert registry.versions() == [first, second]
    assert registry.latest() == second
    registry.save(models, FEATURE_NAMES, METADATA)
    assert registry.latest() == first  # the version just saved, even when it already existed
    assert registry.versions() == [first, second]


def test_load_estimators_returns_the_fitted_models(registry, models) -> None:
    version = registry.save(models, FEATURE_NAMES, METADATA)
    loaded = registry.load_estimators(version)
    X, _, _ = regime_data(100, seed=3)
    for name in REGIMES:
        np.testing.assert_array_equal(loaded[name].decision_function(X), models[name].decision_function(X))


def test_tampered_forest_is_detected(registry, models) -> None:
    version = registry.save(models, FEATURE_NAMES, METADATA)
    path = registry.root / version / "forest.npz"
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["bear.threshold"][3] += 0.01
    np.savez(path, **arrays)
    with pytest.raises(ModelIntegrityError, match="modified or corrupted"):
        registry.load(version)


def test_corrupt_forest_file_is_detected(registry, models) -> None:
    version = registry.save(models, FEATURE_NAMES, METADATA)
    (registry.root / version / "forest.npz").write_bytes(b"not a zip file")
    with pytest.raises(ModelIntegrityError):
        registry.load(version)


def test_tampered_feature_names_are_detected(registry, models) -> None:
    version = registry.save(models, FEATURE_NAMES, METADATA)
    path = registry.root / version / "model.json"
    manifest = json.loads(path.read_text())
    manifest["feature_names"][0] = "something_else"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError):
        registry.load(version)


def test_tampered_estimators_are_detected(registry, models) -> None:
    version = registry.save(models, FEATURE_NAMES, METADATA)
    path = registry.root / version / "estimators.pkl"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelIntegrityError):
        registry.load_estimators(version)


@pytest.mark.parametrize("version", ["0123456789abcdef", "../../etc", "", "LATEST"])
def test_missing_version_says_how_to_make_one(registry, models, version: str) -> None:
    registry.save(models, FEATURE_NAMES, METADATA)
    with pytest.raises(ModelNotFound, match="glassbox train"):
        registry.load(version)
    with pytest.raises(ModelNotFound, match="glassbox train"):
        registry.load_estimators(version)


def test_missing_root_has_nothing(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "absent")
    assert registry.versions() == [] and registry.latest() is None
    with pytest.raises(ModelNotFound):
        registry.load("0123456789abcdef")


def test_metadata_must_be_json(registry, models) -> None:
    with pytest.raises(InvalidModelMetadata):
        registry.save(models, FEATURE_NAMES, {"when": object()})
    assert registry.versions() == []
