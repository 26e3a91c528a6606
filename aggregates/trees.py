"""Fitted scikit-learn gradient-boosted trees, flattened and evaluated with Numba.

:class:`CompiledForest` turns a fitted binary ``GradientBoostingClassifier``
into contiguous node arrays and reproduces ``decision_function`` and
``predict_proba[:, 1]`` exactly, including scikit-learn's float32 quirk: its
trees compare ``float32(x)`` with ``<=`` against float64 thresholds, so a
float64 feature that lands on the other side of a threshold once rounded to
float32 takes the other branch than a naive float64 comparison would.

:class:`ForestStack` evaluates several forests over one feature vector in a
single compiled call (the regime specialists on the hot path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numba import njit
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier

from aggregates.errors import FeatureMismatch, UnsupportedModel

__all__ = ["ARRAY_NAMES", "CompiledForest", "ForestStack"]

_LEAF = -1  # scikit-learn's TREE_LEAF marker in children_left/children_right

ARRAY_NAMES: tuple[str, ...] = (
    "children_left",
    "children_right",
    "feature",
    "threshold",
    "value",
    "tree_offsets",
    "init",
    "learning_rate",
    "n_features",
)
"""Keys of :meth:`CompiledForest.to_arrays`, in a fixed order (hashing relies on it)."""


@njit(cache=True)
def _forest_margin(x, left, right, feature, threshold, value, roots, init, learning_rate):  # pragma: no cover
    acc = init
    for t in range(roots.shape[0]):
        node = roots[t]
        while left[node] != _LEAF:
            # float32 first: scikit-learn casts X to float32 before its trees compare.
            if np.float32(x[feature[node]]) <= threshold[node]:
                node = left[node]
            else:
                node = right[node]
        # Added stage by stage, as sklearn's predict_stages does, so the
        # rounding matches decision_function bit for bit.
        acc += learning_rate * value[node]
    return acc


@njit(cache=True)
def _forest_margins(X, left, right, feature, threshold, value, roots, init, learning_rate, out):  # pragma: no cover
    for i in range(X.shape[0]):
        out[i] = _forest_margin(X[i], left, right, feature, threshold, value, roots, init, learning_rate)


@njit(cache=True)
def _expit(m):  # pragma: no cover
    return 1.0 / (1.0 + np.exp(-m))


@njit(cache=True)
def _expit_inplace(out):  # pragma: no cover
    for i in range(out.shape[0]):
        out[i] = _expit(out[i])


@njit(cache=True)
def _stack_margins(x, left, right, feature, threshold, value, roots, bounds, inits, rates, out):  # pragma: no cover
    for k in range(out.shape[0]):
        out[k] = _forest_margin(
            x, left, right, feature, threshold, value, roots[bounds[k] : bounds[k + 1]], inits[k], rates[k]
        )


def _init_raw_prediction(model: GradientBoostingClassifier) -> float:
    """The constant raw prediction of the model's ``init_`` estimator, exactly as sklearn computes it."""
    init = model.init_
    if isinstance(init, str) and init == "zero":
        return 0.0
    if type(init) is not DummyClassifier or init.strategy != "prior":
        raise UnsupportedModel(
            f"init estimator {init!r} gives a per-row starting prediction; only the default "
            "(init=None, a prior DummyClassifier) or init='zero' can be compiled"
        )
    # The prior's raw prediction does not depend on the row, so any row gives it.
    # Going through sklearn's own _raw_predict_init (clip to [eps, 1-eps], then
    # the loss's logit link) reproduces its rounding exactly, where a hand-written
    # log(p / (1 - p)) can be off by an ulp.
    row = np.zeros((1, model.n_features_in_), dtype=np.float32)
    return float(model._raw_predict_init(row)[0, 0])


def _check_binary_gbm(model: object) -> None:
    if not isinstance(model, GradientBoostingClassifier):
        raise UnsupportedModel(f"expected a fitted GradientBoostingClassifier, got {type(model).__name__}")
    if not hasattr(model, "estimators_"):
        raise UnsupportedModel("the GradientBoostingClassifier is not fitted: call fit(X, y) before compiling it")
    if model.n_classes_ != 2:
        raise UnsupportedModel(f"only binary classifiers can be compiled, this one has {model.n_classes_} classes")
    if model.loss != "log_loss":
        raise UnsupportedModel(f"only loss='log_loss' can be compiled (its probability is expit), got {model.loss!r}")


def _as_rows(X: np.ndarray, n_features: int) -> np.ndarray:
    rows = np.ascontiguousarray(X, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise FeatureMismatch(f"expected an (n, {n_features}) feature matrix, got shape {rows.shape}")
    return rows


class CompiledForest:
    """A fitted binary gradient-boosted classifier as flat arrays and a Numba evaluator.

    Node arrays hold every tree back to back; children indices are absolute
    into them (``-1`` marks a leaf) and ``tree_offsets`` holds each tree's
    root. ``margin`` = ``init + sum(learning_rate * leaf value)`` equals
    ``decision_function``; ``proba_up`` = ``expit(margin)`` is the probability
    of ``classes_[1]``. Non-finite features follow the right branch (NaN
    compares false), although scikit-learn itself refuses NaN input.
    Instances are never mutated after construction and are safe to share between threads.
    """

    def __init__(
        self,
        children_left: np.ndarray,
        children_right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
        tree_offsets: np.ndarray,
        init: float,
        learning_rate: float,
        n_features: int,
    ) -> None:
        """Wrap already-flattened arrays (copied); prefer :meth:`from_sklearn` or :meth:`from_arrays`.

        Raises:
            UnsupportedModel: the arrays are inconsistent (lengths, child or
                feature indices out of range), which would make evaluation read out of bounds.
        """
        # Private and writable on purpose: Numba's dispatcher takes noticeably
        # longer to type read-only arrays, and nothing outside this class gets them.
        self._left = np.array(children_left, dtype=np.int64, order="C")
        self._right = np.array(children_right, dtype=np.int64, order="C")
        self._feature = np.array(feature, dtype=np.int64, order="C")
        self._threshold = np.array(threshold, dtype=np.float64, order="C")
        self._value = np.array(value, dtype=np.float64, order="C")
        self._roots = np.array(tree_offsets, dtype=np.int64, order="C")
        self.init = float(init)
        self.learning_rate = float(learning_rate)
        self.n_features = int(n_features)
        self._check_layout()

    def _check_layout(self) -> None:
        # Numba does no bounds checking: a corrupt array would read arbitrary memory.
        n = self._left.shape[0]
        arrays = (self._left, self._right, self._feature, self._threshold, self._value)
        if any(a.ndim != 1 or a.shape[0] != n for a in arrays) or self._roots.ndim != 1:
            raise UnsupportedModel("forest arrays must be 1-D and of equal length")
        if self._roots.shape[0] == 0 or np.any((self._roots < 0) | (self._roots >= n)):
            raise UnsupportedModel("forest tree_offsets must name at least one root inside the node arrays")
        inner = self._left != _LEAF
        if np.any((self._right == _LEAF) == inner):
            raise UnsupportedModel("forest leaves must have no children on either side")
        # Children after their parent also rules out cycles (an endless walk).
        for children in (self._left[inner], self._right[inner]):
            if np.any((children <= np.flatnonzero(inner)) | (children >= n)):
                raise UnsupportedModel("forest children must point forward inside the node arrays")
        if np.any((self._feature[inner] < 0) | (self._feature[inner] >= self.n_features)):
            raise UnsupportedModel(f"forest split features must lie in [0, {self.n_features})")
        finite = np.isfinite(self._value).all() and np.isfinite([self.init, self.learning_rate]).all()
        if not finite or np.isnan(self._threshold[inner]).any():
            raise UnsupportedModel("forest values, thresholds, init and learning_rate must be numbers")

    @classmethod
    def from_sklearn(cls, model: GradientBoostingClassifier) -> CompiledForest:
        """Flatten a fitted binary ``GradientBoostingClassifier`` (loss='log_loss').

        Raises:
            UnsupportedModel: not a GradientBoostingClassifier, not fitted,
                multi-class, another loss, or an ``init`` estimator whose
                prediction depends on the row.
        """
        _check_binary_gbm(model)
        init = _init_raw_prediction(model)
        trees = [estimator.tree_ for estimator in model.estimators_[:, 0]]
        sizes = np.array([tree.node_count for tree in trees], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        left, right = [], []
        for tree, offset in zip(trees, offsets):
            left.append(np.where(tree.children_left == _LEAF, _LEAF, tree.children_left + offset))
            right.append(np.where(tree.children_right == _LEAF, _LEAF, tree.children_right + offset))
        return cls(
            children_left=np.concatenate(left),
            children_right=np.concatenate(right),
            feature=np.concatenate([tree.feature for tree in trees]),
            threshold=np.concatenate([tree.threshold for tree in trees]),
            # Regression trees: value has shape (node_count, 1, 1).
            value=np.concatenate([tree.value[:, 0, 0] for tree in trees]),
            tree_offsets=offsets,
            init=init,
            learning_rate=model.learning_rate,
            n_features=model.n_features_in_,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The forest as named arrays (keys :data:`ARRAY_NAMES`), e.g. for ``np.savez``. Raises nothing."""
        return {
            "children_left": self._left.copy(),
            "children_right": self._right.copy(),
            "feature": self._feature.copy(),
            "threshold": self._threshold.copy(),
            "value": self._value.copy(),
            "tree_offsets": self._roots.copy(),
            "init": np.array(self.init, dtype=np.float64),
            "learning_rate": np.array(self.learning_rate, dtype=np.float64),
            "n_features": np.array(self.n_features, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> CompiledForest:
        """Rebuild a forest from :meth:`to_arrays` output.

        Raises:
            UnsupportedModel: a key is missing or the arrays are inconsistent.
        """
        missing = [name for name in ARRAY_NAMES if name not in arrays]
        if missing:
            raise UnsupportedModel(f"forest arrays are missing {missing}")
        scalars = {name: np.asarray(arrays[name]) for name in ("init", "learning_rate", "n_features")}
        if any(a.size != 1 for a in scalars.values()):
            raise UnsupportedModel("forest init, learning_rate and n_features must be scalars")
        return cls(
            children_left=arrays["children_left"],
            children_right=arrays["children_right"],
            feature=arrays["feature"],
            threshold=arrays["threshold"],
            value=arrays["value"],
            tree_offsets=arrays["tree_offsets"],
            init=float(scalars["init"].item()),
            learning_rate=float(scalars["learning_rate"].item()),
            n_features=int(scalars["n_features"].item()),
        )

    @property
    def n_trees(self) -> int:
        """Number of boosting stages."""
        return int(self._roots.shape[0])

    def margin(self, x: np.ndarray) -> float:
        """Raw margin (log-odds) for one float64 feature vector of length ``n_features``; allocation-free.

        Raises:
            FeatureMismatch: ``x`` is not 1-D of length ``n_features``.
        """
        if x.ndim != 1 or x.shape[0] != self.n_features:
            raise FeatureMismatch(f"expected a feature vector of shape ({self.n_features},), got {x.shape}")
        return _forest_margin(
            x,
            *self._kernel_args(),
        )

    def _kernel_args(self) -> tuple:
        # The forest as the Numba kernels take it, in their parameter order.
        return (self._left, self._right, self._feature, self._threshold, self._value,
                self._roots, self.init, self.learning_rate)

    def proba_up(self, x: np.ndarray) -> float:
        """P(``classes_[1]``) for one feature vector: ``expit(margin(x))``.

        Raises:
            FeatureMismatch: ``x`` is not 1-D of length ``n_features``.
        """
        return _expit(self.margin(x))

    def margins(self, X: np.ndarray) -> np.ndarray:
        """Raw margins for each row of ``X`` (n, n_features); equals ``decision_function``.

        Raises:
            FeatureMismatch: ``X`` is not 2-D with ``n_features`` columns.
        """
        rows = _as_rows(X, self.n_features)
        out = np.empty(rows.shape[0], dtype=np.float64)
        _forest_margins(
            rows,
            *self._kernel_args(),
            out,
        )
        return out

    def probas(self, X: np.ndarray) -> np.ndarray:
        """P(``classes_[1]``) for each row; equals ``predict_proba(X)[:, 1]``.

        Raises:
            FeatureMismatch: ``X`` is not 2-D with ``n_features`` columns.
        """
        out = self.margins(X)
        _expit_inplace(out)
        return out


class ForestStack:
    """Several compiled forests over the same features, evaluated in one Numba call.

    The node arrays are concatenated so one dispatch computes every margin:
    each Numba dispatch costs ~60 ns per array argument, a sizeable share of
    a few-microsecond walk. Never mutated after construction; thread-safe.

    Raises:
        UnsupportedModel: no forests given.
        FeatureMismatch: the forests do not all take the same number of features.
    """

    def __init__(self, forests: Sequence[CompiledForest]) -> None:
        if not forests:
            raise UnsupportedModel("a ForestStack needs at least one forest")
        widths = {forest.n_features for forest in forests}
        if len(widths) != 1:
            raise FeatureMismatch(f"stacked forests must take the same number of features, got {sorted(widths)}")
        self.forests = tuple(forests)
        self.n_features = widths.pop()
        parts = [forest.to_arrays() for forest in forests]
        node_offsets = np.cumsum([0] + [p["children_left"].shape[0] for p in parts])
        left, right, roots = [], [], []
        for part, offset in zip(parts, node_offsets):
            left.append(np.where(part["children_left"] == _LEAF, _LEAF, part["children_left"] + offset))
            right.append(np.where(part["children_right"] == _LEAF, _LEAF, part["children_right"] + offset))
            roots.append(part["tree_offsets"] + offset)
        # Private and writable for the same dispatch-cost reason as in CompiledForest.
        self._left = np.concatenate(left).astype(np.int64)
        self._right = np.concatenate(right).astype(np.int64)
        self._feature = np.concatenate([p["feature"] for p in parts]).astype(np.int64)
        self._threshold = np.concatenate([p["threshold"] for p in parts]).astype(np.float64)
        self._value = np.concatenate([p["value"] for p in parts]).astype(np.float64)
        self._roots = np.concatenate(roots).astype(np.int64)
        self._bounds = np.cumsum([0] + [f.n_trees for f in forests]).astype(np.int64)
        self._inits = np.array([f.init for f in forests], dtype=np.float64)
        self._rates = np.array([f.learning_rate for f in forests], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.forests)

    def kernel_arrays(self) -> tuple[np.ndarray, ...]:
        """The stack's node arrays in ``_stack_margins``' argument order, for a kernel that calls it itself."""
        return (self._left, self._right, self._feature, self._threshold, self._value, self._roots,
                self._bounds, self._inits, self._rates)

    def margins(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write each forest's raw margin for one float64 feature vector into ``out``; allocation-free.

        Raises:
            FeatureMismatch: ``x`` is not 1-D of length ``n_features`` or
                ``out`` is not 1-D with one slot per forest.
        """
        if x.ndim != 1 or x.shape[0] != self.n_features or out.ndim != 1 or out.shape[0] != len(self.forests):
            raise FeatureMismatch(
                f"expected x of shape ({self.n_features},) and out of shape ({len(self.forests)},), "
                f"got {x.shape} and {out.shape}"
            )
        _stack_margins(
            x,
            self._left,
            self._right,
            self._feature,
            self._threshold,
            self._value,
            self._roots,
            self._bounds,
            self._inits,
            self._rates,
            out,
        )
