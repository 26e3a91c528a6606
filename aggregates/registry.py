"""Versioned, content-addressed storage of regime specialists in a folder.

Layout under the ``root`` folder passed in::

    root/
      LATEST                  version saved most recently
      <version>/
        forest.npz            flattened forests, keys "<regime>.<array>"
        estimators.pkl        the fitted scikit-learn estimators (for shap.TreeExplainer)
        model.json            version, feature names, metadata, training params, checksums

``version`` is the first 16 hex digits of a SHA-256 over the flattened
arrays and the feature names, so identical models always get the same
version and a version names exactly one model. This is the only module in
``aggregates/`` that touches the file system, and only under ``root``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import GradientBoostingClassifier

from aggregates.errors import (
    FeatureMismatch,
    InvalidModelMetadata,
    ModelIntegrityError,
    ModelNotFound,
    UnsupportedModel,
)
from aggregates.regime import REGIMES
from aggregates.specialists import SpecialistSet
from aggregates.trees import ARRAY_NAMES, CompiledForest

__all__ = ["ModelRegistry", "content_version"]

FOREST_FILE = "forest.npz"
ESTIMATORS_FILE = "estimators.pkl"
MANIFEST_FILE = "model.json"
LATEST_FILE = "LATEST"
_FORMAT = 1
_VERSION_PATTERN = re.compile(r"^[0-9a-f]{16}$")
_INT_ARRAYS = frozenset({"children_left", "children_right", "feature", "tree_offsets", "n_features"})
_TRAIN_HINT = "run `glassbox train` to fit and save specialists"


def content_version(forests: Mapping[str, Mapping[str, np.ndarray]], feature_names: Sequence[str]) -> str:
    """The version of a specialist set: 16 hex digits of SHA-256 over its arrays and feature names.

    ``forests`` maps each regime to :meth:`CompiledForest.to_arrays` output.
    Arrays are hashed in a canonical little-endian int64/float64 form with
    their shapes, so the version does not depend on platform or file format.

    Raises:
        KeyError: a regime or array is missing.
    """
    digest = hashlib.sha256(b"glassbox.specialists.v1\0")
    digest.update(json.dumps([str(name) for name in feature_names]).encode())
    for regime in REGIMES:
        arrays = forests[regime]
        for name in ARRAY_NAMES:
            dtype = "<i8" if name in _INT_ARRAYS else "<f8"
            array = np.ascontiguousarray(arrays[name], dtype=dtype)
            digest.update(f"\0{regime}.{name}:{array.shape}\0".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _json_safe_params(model: GradientBoostingClassifier) -> dict[str, object]:
    params = model.get_params(deep=False)
    return {k: v if v is None or isinstance(v, (bool, int, float, str)) else repr(v) for k, v in params.items()}


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class ModelRegistry:
    """Saves and loads specialist sets under ``root``, one immutable folder per version.

    Writes are atomic (a hidden temporary folder renamed into place), so a
    reader never sees half a version, and concurrent saves of the same
    models are harmless. Only this class reads or writes model files.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- writing -----------------------------------------------------------

    def save(
        self,
        models: Mapping[str, GradientBoostingClassifier],
        feature_names: Sequence[str],
        metadata: Mapping[str, object],
    ) -> str:
        """Store fitted specialists (one per regime) and return their version.

        ``metadata`` says what the models were created from (data range,
        symbols, seed, ...) and must be JSON-serialisable. Saving a version
        that already exists rewrites nothing (its first metadata stays) but
        still makes it the :meth:`latest`.

        Raises:
            UnsupportedModel: a regime is missing or a model cannot be compiled.
            FeatureMismatch: ``feature_names`` does not match the models' feature count.
            InvalidModelMetadata: ``metadata`` is not JSON-serialisable.
            ModelIntegrityError: a damaged folder of the same version is in the way.
            OSError: the folder cannot be written.
        """
        names = tuple(str(name) for name in feature_names)
        missing = [regime for regime in REGIMES if regime not in models]
        if missing:
            raise UnsupportedModel(f"no specialist for regimes {missing}: expected one per regime {REGIMES}")
        forests = {regime: CompiledForest.from_sklearn(models[regime]) for regime in REGIMES}
        for regime, forest in forests.items():
            if forest.n_features != len(names):
                raise FeatureMismatch(
                    f"{regime} specialist takes {forest.n_features} features, {len(names)} names given"
                )
        arrays = {regime: forest.to_arrays() for regime, forest in forests.items()}
        version = content_version(arrays, names)
        try:
            metadata_json = json.loads(json.dumps(dict(metadata), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidModelMetadata(f"model metadata must be JSON-serialisable: {exc}") from exc
        if not (self.root / version / MANIFEST_FILE).is_file():
            estimators = {regime: models[regime] for regime in REGIMES}
            manifest = {
                "format": _FORMAT,
                "version": version,
                "sequence": self._next_sequence(),
                "regimes": list(REGIMES),
                "feature_names": list(names),
                "metadata": metadata_json,
                "training_params": {regime: _json_safe_params(estimators[regime]) for regime in REGIMES},
                "n_trees": {regime: forests[regime].n_trees for regime in REGIMES},
                "sklearn_version": sklearn.__version__,
                "numpy_version": np.__version__,
            }
            self._write_version(version, arrays, estimators, manifest)
        self._write_latest(version)
        return version

    def _write_version(
        self,
        version: str,
        arrays: Mapping[str, Mapping[str, np.ndarray]],
        estimators: Mapping[str, GradientBoostingClassifier],
        manifest: dict[str, object],
    ) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=self.root))
        try:
            flat = {f"{regime}.{name}": array for regime, named in arrays.items() for name, array in named.items()}
            with open(staging / FOREST_FILE, "wb") as handle:
                np.savez(handle, **flat)
                handle.flush()
                os.fsync(handle.fileno())
            pickled = pickle.dumps(dict(estimators), protocol=pickle.HIGHEST_PROTOCOL)
            _write_file(staging / ESTIMATORS_FILE, pickled)
            manifest["estimators_sha256"] = hashlib.sha256(pickled).hexdigest()
            _write_file(staging / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True).encode())
            final = self.root / version
            try:
                os.rename(staging, final)
            except OSError as exc:
                # Another writer won the race with the same content: theirs is as good as ours.
                if (final / MANIFEST_FILE).is_file():
                    return
                if final.exists():
                    raise ModelIntegrityError(
                        f"{final} exists but holds no {MANIFEST_FILE} (a damaged version): delete it and save again"
                    ) from exc
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _write_latest(self, version: str) -> None:
        # Replace, not rewrite in place: a reader sees the old or the new name, never half of one.
        handle, temp = tempfile.mkstemp(prefix=".latest-", dir=self.root)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(version.encode() + b"\n")
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp, self.root / LATEST_FILE)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _next_sequence(self) -> int:
        return 1 + max((sequence for sequence, _ in self._listing()), default=0)

    # -- reading -----------------------------------------------------------

    def versions(self) -> list[str]:
        """All stored versions, oldest save first (folders without a readable model.json are skipped).

        Raises nothing; an absent root has no versions.
        """
        return [version for _, version in sorted(self._listing())]

    def _listing(self) -> list[tuple[int, str]]:
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            if not _VERSION_PATTERN.match(folder.name):
                continue
            try:
                sequence = int(json.loads((folder / MANIFEST_FILE).read_text())["sequence"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a complete version folder; load() will say what is wrong with it
            found.append((sequence, folder.name))
        return found

    def latest(self) -> str | None:
        """The version saved most recently, or ``None`` if nothing was saved yet. Raises nothing."""
        try:
            version = (self.root / LATEST_FILE).read_text().strip()
        except OSError:
            return None
        return version if _VERSION_PATTERN.match(version) else None

    def _folder(self, version: str) -> Path:
        if not isinstance(version, str) or not _VERSION_PATTERN.match(version):
            raise ModelNotFound(f"{version!r} is not a model version (16 hex digits); {_TRAIN_HINT}")
        folder = self.root / version
        if not (folder / MANIFEST_FILE).is_file():
            raise ModelNotFound(f"model version {version} not found in {self.root}: {_TRAIN_HINT}")
        return folder

    def _manifest(self, folder: Path) -> dict[str, object]:
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ModelIntegrityError(f"{folder / MANIFEST_FILE} is unreadable ({exc}); {_TRAIN_HINT} again") from exc
        if not isinstance(manifest, dict) or manifest.get("version") != folder.name:
            raise ModelIntegrityError(f"{folder / MANIFEST_FILE} does not describe version {folder.name}")
        return manifest

    def feature_names(self, version: str) -> tuple[str, ...]:
        """The names of the feature vector ``version`` was trained on (its manifest only; cheap).

        Raises:
            ModelNotFound: no such version under ``root``.
        """
        return tuple(str(name) for name in self._manifest(self._folder(version)).get("feature_names", []))

    def load(self, version: str) -> SpecialistSet:
        """The compiled specialists of ``version``, after checking their content hash.

        Raises:
            ModelNotFound: no such version under ``root`` (or not a version string).
            ModelIntegrityError: files unreadable, or their content no longer hashes to ``version``.
        """
        folder = self._folder(version)
        manifest = self._manifest(folder)
        names = [str(name) for name in manifest.get("feature_names", [])]
        try:
            with np.load(folder / FOREST_FILE, allow_pickle=False) as stored:
                flat = {key: stored[key] for key in stored.files}
            arrays = {regime: {name: flat[f"{regime}.{name}"] for name in ARRAY_NAMES} for regime in REGIMES}
            actual = content_version(arrays, names)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelIntegrityError(f"{folder / FOREST_FILE} is unreadable ({exc}); {_TRAIN_HINT} again") from exc
        if actual != version:
            raise ModelIntegrityError(
                f"model files in {folder} hash to {actual}, not {version}: they were modified or corrupted; "
                f"delete the folder and {_TRAIN_HINT} again"
            )
        try:
            forests = [CompiledForest.from_arrays(arrays[regime]) for regime in REGIMES]
            return SpecialistSet(forests, version, names)
        except (UnsupportedModel, FeatureMismatch) as exc:
            raise ModelIntegrityError(f"model files in {folder} are inconsistent: {exc}") from exc

    def load_estimators(self, version: str) -> dict[str, GradientBoostingClassifier]:
        """The fitted scikit-learn estimators of ``version`` (e.g. for ``shap.TreeExplainer``).

        The pickle's checksum is verified before unpickling, and the unpickled
        models must compile to exactly ``version``. Unpickling runs code from
        the file: only load registries you wrote yourself.

        Raises:
            ModelNotFound: no such version under ``root``.
            ModelIntegrityError: the pickle is altered or does not rebuild the stored models.
        """
        folder = self._folder(version)
        manifest = self._manifest(folder)
        try:
            pickled = (folder / ESTIMATORS_FILE).read_bytes()
        except OSError as exc:
            raise ModelIntegrityError(f"{folder / ESTIMATORS_FILE} is unreadable ({exc}); {_TRAIN_HINT} again") from exc
        if hashlib.sha256(pickled).hexdigest() != manifest.get("estimators_sha256"):
            raise ModelIntegrityError(f"{folder / ESTIMATORS_FILE} was modified or corrupted; {_TRAIN_HINT} again")
        models = pickle.loads(pickled)
        try:
            arrays = {regime: CompiledForest.from_sklearn(models[regime]).to_arrays() for regime in REGIMES}
        except (UnsupportedModel, KeyError, TypeError) as exc:
            raise ModelIntegrityError(f"{folder / ESTIMATORS_FILE} does not hold the specialists: {exc}") from exc
        if content_version(arrays, manifest.get("feature_names", [])) != version:
            raise ModelIntegrityError(f"{folder / ESTIMATORS_FILE} does not rebuild version {version}")
        return {regime: models[regime] for regime in REGIMES}
