"""Exact path-dependent TreeSHAP for small trees, as lookup tables evaluated with Numba.

``shap.TreeExplainer`` walks every tree of the model for every row (~280 ns a
tree of depth 3 here: ~83 µs a decision over 3 × 100 trees). But in
path-dependent TreeSHAP a row enters the algorithm only through which child
it takes at each internal node: a tree with K internal nodes has at most
2**K distinct explanations. :class:`TreeShapTables` computes all of them
once per tree, with a port of shap's own recursion (as a loop) (``tree_shap.h``:
``extend_path``, ``unwind_path``, ``unwound_path_sum``), so explaining a row
is K comparisons and a few additions per tree.

It reads the tree arrays of shap's own ``TreeEnsemble`` (values already
scaled by the learning rate, ``children_default`` for missing values, inputs
compared as float32 as shap and scikit-learn do), so it means exactly what
``shap.TreeExplainer(model).shap_values`` means; it equals it to 1e-9 on
every row (``tests/projections/test_tree_shap.py``, shap kept as the
reference). Trees with more than :data:`MAX_INTERNAL_NODES` internal nodes
would need too large a table: :meth:`TreeShapTables.from_explainer` returns
None for such a model and the caller keeps shap.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numba import njit

__all__ = ["MAX_INTERNAL_NODES", "TreeShapTables"]

log = logging.getLogger(__name__)

MAX_INTERNAL_NODES = 10
"""Largest internal-node count per tree tabulated (2**10 explanations a tree); deeper models keep shap."""


@njit(cache=True)
def _extend(feat, zero, one, pw, base, depth, zero_fraction, one_fraction, feature):  # pragma: no cover
    feat[base + depth] = feature
    zero[base + depth] = zero_fraction
    one[base + depth] = one_fraction
    pw[base + depth] = 1.0 if depth == 0 else 0.0
    for i in range(depth - 1, -1, -1):
        pw[base + i + 1] += one_fraction * pw[base + i] * (i + 1) / (depth + 1)
        pw[base + i] = zero_fraction * pw[base + i] * (depth - i) / (depth + 1)


@njit(cache=True)
def _unwind(feat, zero, one, pw, base, depth, index):  # pragma: no cover
    one_fraction = one[base + index]
    zero_fraction = zero[base + index]
    next_one = pw[base + depth]
    for i in range(depth - 1, -1, -1):
        if one_fraction != 0:
            tmp = pw[base + i]
            pw[base + i] = next_one * (depth + 1) / ((i + 1) * one_fraction)
            next_one = tmp - pw[base + i] * zero_fraction * (depth - i) / (depth + 1)
        else:
            pw[base + i] = (pw[base + i] * (depth + 1)) / (zero_fraction * (depth - i))
    for i in range(index, depth):
        feat[base + i] = feat[base + i + 1]
        zero[base + i] = zero[base + i + 1]
        one[base + i] = one[base + i + 1]


@njit(cache=True)
def _unwound_sum(zero, one, pw, base, depth, index):  # pragma: no cover
    one_fraction = one[base + index]
    zero_fraction = zero[base + index]
    next_one = pw[base + depth]
    total = 0.0
    if one_fraction != 0:
        for i in range(depth - 1, -1, -1):
            tmp = next_one / ((i + 1) * one_fraction)
            total += tmp
            next_one = pw[base + i] - tmp * zero_fraction * (depth - i)
    else:
        for i in range(depth - 1, -1, -1):
            total += pw[base + i] / (zero_fraction * (depth - i))
    return total * (depth + 1)


@njit(cache=True)
def _tree_shap(left, right, features, values, weights, hot_left, phi, feat, zero, one, pw, stack_i, stack_f):  # pragma: no cover
    """shap's ``tree_shap_recursive`` (no conditioning), the hot child given per node by ``hot_left``.

    Depth-first with an explicit stack (hot child before cold, as shap recurses), so that numba
    can cache it: each node's path lives at ``parent + depth + 1``, which a deeper subtree never
    overwrites, so the cold child still finds its parent's path after the hot subtree is done.
    """
    top = 0
    stack_i[0, 0], stack_i[0, 1], stack_i[0, 2], stack_i[0, 3] = 0, 0, 0, -1  # node, depth, parent, feature
    stack_f[0, 0], stack_f[0, 1] = 1.0, 1.0  # parent zero and one fractions
    while top >= 0:
        node, depth, parent, parent_feature = stack_i[top, 0], stack_i[top, 1], stack_i[top, 2], stack_i[top, 3]
        parent_zero, parent_one = stack_f[top, 0], stack_f[top, 1]
        top -= 1
        base = parent + depth + 1
        for i in range(depth + 1):
            feat[base + i] = feat[parent + i]
            zero[base + i] = zero[parent + i]
            one[base + i] = one[parent + i]
            pw[base + i] = pw[parent + i]
        _extend(feat, zero, one, pw, base, depth, parent_zero, parent_one, parent_feature)
        if right[node] < 0:
            for i in range(1, depth + 1):
                w = _unwound_sum(zero, one, pw, base, depth, i)
                scale = w * (one[base + i] - zero[base + i]) * 1.0
                phi[feat[base + i]] += scale * values[node]
            continue
        split = features[node]
        hot = left[node] if hot_left[node] else right[node]
        cold = right[node] if hot == left[node] else left[node]
        w = weights[node]
        hot_zero = weights[hot] / w
        cold_zero = weights[cold] / w
        incoming_zero = 1.0
        incoming_one = 1.0
        index = 0
        while index <= depth:
            if feat[base + index] == split:
                break
            index += 1
        if index != depth + 1:
            incoming_zero = zero[base + index]
            incoming_one = one[base + index]
            _unwind(feat, zero, one, pw, base, depth, index)
            depth -= 1
        top += 1  # cold first onto the stack, so that hot is explained first
        stack_i[top, 0], stack_i[top, 1], stack_i[top, 2], stack_i[top, 3] = cold, depth + 1, base, split
        stack_f[top, 0], stack_f[top, 1] = cold_zero * incoming_zero, 0.0
        top += 1
        stack_i[top, 0], stack_i[top, 1], stack_i[top, 2], stack_i[top, 3] = hot, depth + 1, base, split
        stack_f[top, 0], stack_f[top, 1] = hot_zero * incoming_zero, incoming_one


@njit(cache=True)
def _tabulate(left, right, features, values, weights, internal, n_internal, used, n_used, max_depth,
              n_features, table):  # pragma: no cover
    """``table[t, p, j]``: SHAP value of feature ``used[t, j]`` in tree ``t`` when the hot children are ``p``'s bits."""
    size = (max_depth + 2) * (max_depth + 3) // 2
    feat = np.empty(size, np.int64)
    zero = np.empty(size)
    one = np.empty(size)
    pw = np.empty(size)
    phi = np.zeros(n_features)
    hot_left = np.zeros(left.shape[1], np.bool_)
    stack_i = np.empty((left.shape[1] + 1, 4), np.int64)
    stack_f = np.empty((left.shape[1] + 1, 2))
    for t in range(left.shape[0]):
        for p in range(1 << n_internal[t]):
            for k in range(n_internal[t]):
                hot_left[internal[t, k]] = (p >> k) & 1 == 1
            phi[:] = 0.0
            feat[0] = -1
            _tree_shap(left[t], right[t], features[t], values[t], weights[t], hot_left, phi,
                       feat, zero, one, pw, stack_i, stack_f)
            for j in range(n_used[t]):
                table[t, p, j] = phi[used[t, j]]


@njit(cache=True)
def _explain(X, left, default, features, thresholds, internal, n_internal, used, n_used, table, out):  # pragma: no cover
    for i in range(X.shape[0]):
        for t in range(internal.shape[0]):
            p = 0
            for k in range(n_internal[t]):
                node = internal[t, k]
                x = X[i, features[t, node]]  # float32, as shap casts it
                if np.isnan(x):
                    go_left = default[t, node] == left[t, node]
                else:
                    go_left = np.float64(x) <= thresholds[t, node]
                if go_left:
                    p |= 1 << k
            for j in range(n_used[t]):
                out[i, used[t, j]] += table[t, p, j]


class TreeShapTables:
    """Every explanation each tree of one model can give, and a compiled lookup over rows."""

    def __init__(self, ensemble: Any, n_features: int) -> None:
        """Tabulate shap's ``TreeEnsemble`` ``ensemble``; prefer :meth:`from_explainer`.

        Raises:
            ValueError: a tree has more than :data:`MAX_INTERNAL_NODES` internal nodes, or the
                ensemble is not a single-output model of numeric splits.
        """
        left = np.ascontiguousarray(ensemble.children_left, dtype=np.int64)
        right = np.ascontiguousarray(ensemble.children_right, dtype=np.int64)
        if ensemble.values.shape[2] != 1 or np.any(ensemble.threshold_types != 0):
            raise ValueError("only single-output trees with numeric splits can be tabulated")
        is_internal = right >= 0
        counts = is_internal.sum(axis=1)
        if counts.max(initial=0) > MAX_INTERNAL_NODES:
            raise ValueError(f"a tree has {counts.max()} internal nodes; at most {MAX_INTERNAL_NODES} can be tabulated")
        n_trees = left.shape[0]
        k_max = max(int(counts.max(initial=0)), 1)
        self._internal = np.zeros((n_trees, k_max), np.int64)
        self._used = np.zeros((n_trees, k_max), np.int64)
        self._n_used = np.zeros(n_trees, np.int64)
        features = np.ascontiguousarray(ensemble.features, dtype=np.int64)
        for t in range(n_trees):
            nodes = np.flatnonzero(is_internal[t])
            self._internal[t, : len(nodes)] = nodes
            used = np.unique(features[t, nodes])
            self._used[t, : len(used)] = used
            self._n_used[t] = len(used)
        self._n_internal = counts.astype(np.int64)
        self._left = left
        self._default = np.ascontiguousarray(ensemble.children_default, dtype=np.int64)
        self._features = features
        self._thresholds = np.ascontiguousarray(ensemble.thresholds, dtype=np.float64)
        self.n_features = n_features
        self._table = np.zeros((n_trees, 1 << k_max, k_max))
        _tabulate(left, right, features, np.ascontiguousarray(ensemble.values[:, :, 0], dtype=np.float64),
                  np.ascontiguousarray(ensemble.node_sample_weight, dtype=np.float64), self._internal,
                  self._n_internal, self._used, self._n_used, int(ensemble.max_depth), n_features, self._table)

    @classmethod
    def from_explainer(cls, explainer: Any, n_features: int) -> TreeShapTables | None:
        """Tables for a path-dependent ``shap.TreeExplainer`` of a raw-output model; None where shap must stay.

        Falling back is said once per explainer (a warning): shap is ~15 times slower on the
        deployed model, so a model the tables cannot take shows as forensics lag otherwise unexplained.
        """
        if getattr(explainer, "feature_perturbation", None) != "tree_path_dependent":
            why = f"feature_perturbation is {getattr(explainer, 'feature_perturbation', None)!r}"
        elif getattr(explainer.model, "model_output", None) != "raw" or explainer.model.input_dtype != np.float32:
            why = "the model's output is not raw float32 scores"
        else:
            try:
                return cls(explainer.model, n_features)
            except Exception as error:  # noqa: BLE001 - any shape the tables do not know (a shap change too): shap stays
                why = str(error) or repr(error)
        log.warning("exact TreeSHAP tables not used (%s); shap.TreeExplainer explains these decisions", why)
        return None

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """SHAP values, shape ``(n, n_features)``, equal to ``TreeExplainer.shap_values(X)`` (1e-9).

        Raises:
            ValueError: ``X`` is not an ``(n, n_features)`` matrix.
        """
        rows = np.asarray(X)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected an (n, {self.n_features}) feature matrix, got shape {rows.shape}")
        with np.errstate(over="ignore"):  # beyond float32's range is inf, as in shap's own cast
            rows = np.ascontiguousarray(rows, dtype=np.float32)  # shap's cast for scikit-learn trees
        out = np.zeros((rows.shape[0], self.n_features))
        _explain(rows, self._left, self._default, self._features, self._thresholds, self._internal,
                 self._n_internal, self._used, self._n_used, self._table, out)
        return out
