"""SHAP forensics of decisions: why the blended score came out as it did.

A decision's score is the blend ``sum_r w_r * margin_r(x)`` of the three
regime specialists' raw margins (``aggregates/blend.py``). SHAP values are
linear in the model, so the blend's explanation is the same blend of the
specialists' explanations::

    phi(x)  = sum_r w_r * phi_r(x)
    E       = sum_r w_r * E_r
    E + sum(phi(x)) = score

Each specialist is explained on the exact model version that took the
decision, once per batch (all rows of one version as one matrix), by
:class:`projections.tree_shap.TreeShapTables`: shap's own path-dependent
TreeSHAP tabulated per tree, equal to ``shap.TreeExplainer`` to 1e-9 and
~15x faster on the deployed depth-3 trees (``shap.TreeExplainer`` itself
explains a model whose trees are too big to tabulate). The rows are then
built from the batch's matrices (top features by one argsort of the whole
batch). Pure computation: the registry is read through
:class:`ExplainerCache`, nothing else is touched.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import shap

from aggregates.errors import ModelNotFound
from aggregates.regime import REGIMES
from aggregates.registry import ModelRegistry
from glassbox import GlassboxError
from projections.tree_shap import TreeShapTables

__all__ = [
    "DecisionToExplain",
    "Explanation",
    "ExplainerCache",
    "RegimeExplainers",
    "UnknownModelVersion",
    "explain_batch",
    "regime_reasoning",
    "strategy_selection",
]

TOP_FEATURES = 10


class UnknownModelVersion(GlassboxError, LookupError):
    """The decision names a model version the registry does not hold (a poison message)."""


@dataclass(frozen=True)
class DecisionToExplain:
    """What forensics needs of one decision (all of it is in the decision event)."""

    decision_id: str
    model_version: str
    features: Sequence[float]
    strategy_weights: Mapping[str, float]
    """Weight per regime name (``bull``, ``bear``, ``sideways``)."""
    regime_probs: Mapping[str, float]
    regime_entropy: float
    specialist_margins: Mapping[str, float]
    score: float
    probability_up: float
    action: str
    quantity: float


@dataclass(frozen=True)
class Explanation:
    """The forensics record of one decision."""

    decision_id: str
    model_version: str
    expected_value: float
    model_output: float
    """``expected_value + sum(shap_values)``: the blended score recomputed by SHAP."""
    shap_values: dict[str, float]
    top_features: list[dict[str, Any]]
    regime_reasoning: str
    strategy_selection: str


@dataclass(frozen=True)
class RegimeExplainers:
    """One TreeExplainer per regime specialist of one model version."""

    version: str
    feature_names: tuple[str, ...]
    explainers: tuple[shap.TreeExplainer, ...]
    expected_values: np.ndarray
    """E_r per regime, in :data:`REGIMES` order."""
    tables: tuple[TreeShapTables | None, ...] = ()
    """The compiled explainer per regime (None, or none at all: that regime's TreeExplainer)."""

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """Per-regime SHAP values of the rows of ``X``, shape ``(n, len(REGIMES), n_features)``."""
        per_regime = []
        for k, explainer in enumerate(self.explainers):
            table = self.tables[k] if k < len(self.tables) else None
            per_regime.append(table.shap_values(X) if table is not None else np.asarray(explainer.shap_values(X)))
        return np.stack(per_regime, axis=1)


class ExplainerCache:
    """Explainers per model version, built from the registry on first use (LRU of ``size``)."""

    def __init__(self, registry: ModelRegistry, size: int = 8) -> None:
        self._registry = registry
        self._size = size
        self._cache: OrderedDict[str, RegimeExplainers] = OrderedDict()

    def get(self, version: str) -> RegimeExplainers:
        """The explainers of ``version``.

        Raises:
            UnknownModelVersion: the registry has no such version.
        """
        if version in self._cache:
            self._cache.move_to_end(version)
            return self._cache[version]
        try:
            estimators = self._registry.load_estimators(version)
            names = self._registry.feature_names(version)
        except ModelNotFound as error:
            raise UnknownModelVersion(f"model version {version!r} is not in the registry: {error}") from error
        explainers = tuple(shap.TreeExplainer(estimators[regime]) for regime in REGIMES)
        expected = np.array([float(np.ravel(e.expected_value)[0]) for e in explainers])
        tables = tuple(TreeShapTables.from_explainer(e, len(names)) for e in explainers)
        entry = RegimeExplainers(version, names, explainers, expected, tables)
        self._cache[version] = entry
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return entry


def explain_batch(explainers: RegimeExplainers, decisions: Sequence[DecisionToExplain]) -> list[Explanation]:
    """Explain decisions that were all taken by ``explainers.version``, in one SHAP call per specialist.

    Raises:
        ValueError: a decision of another version, or a feature vector of the wrong length.
    """
    if not decisions:
        return []
    names = explainers.feature_names
    for d in decisions:
        if d.model_version != explainers.version:
            raise ValueError(f"decision {d.decision_id} was taken by {d.model_version}, not {explainers.version}")
        if len(d.features) != len(names):
            raise ValueError(f"decision {d.decision_id} has {len(d.features)} features, the model takes {len(names)}")
    X = np.array([d.features for d in decisions], dtype=np.float64)
    weights = np.array([[d.strategy_weights[r] for r in REGIMES] for d in decisions], dtype=np.float64)
    per_regime = explainers.shap_values(X)  # (n, 3, f)
    # Elementwise products summed over the three regimes, not BLAS (@, einsum): a BLAS kernel's
    # rounding depends on the batch's shape, and the same decision must give the same bits
    # whichever batch it lands in (a rebuild compares tables by checksum).
    blended = (weights[:, :, None] * per_regime).sum(axis=1)
    expected = (weights * explainers.expected_values[None, :]).sum(axis=1)
    output = expected + blended.sum(axis=1)
    # Row building from the batch's matrices: one stable argsort for every row's top features
    # (ties keep feature order, as a row's own argsort would), values turned to Python floats at once.
    order = np.argsort(-np.abs(blended), axis=1, kind="stable")[:, :TOP_FEATURES]
    rows = np.arange(len(decisions))[:, None]
    top_shap = blended[rows, order].tolist()
    top_value = np.where(np.isfinite(X), X, np.nan)[rows, order].tolist()
    order_list = order.tolist()
    phis = blended.tolist()
    expected_list, output_list = expected.tolist(), output.tolist()
    explained = []
    for i, d in enumerate(decisions):
        top = [
            {"feature": names[j], "value": None if v != v else v, "shap": s}
            for j, v, s in zip(order_list[i], top_value[i], top_shap[i])
        ]
        explained.append(Explanation(
            d.decision_id, d.model_version, expected_list[i], output_list[i], dict(zip(names, phis[i])), top,
            regime_reasoning(d.regime_probs, d.regime_entropy), strategy_selection(d, top),
        ))
    return explained


def regime_reasoning(regime_probs: Mapping[str, float], entropy: float) -> str:
    """One sentence on what the regime filter believed, from its numbers."""
    ranked = sorted(regime_probs.items(), key=lambda kv: -kv[1])
    shares = ", ".join(f"{name} {p:.0%}" for name, p in ranked)
    certainty = entropy / math.log(len(regime_probs)) if len(regime_probs) > 1 else 0.0
    if certainty < 0.5:
        judgement = f"the filter was fairly sure of a {ranked[0][0]} regime"
    elif certainty < 0.9:
        judgement = f"{ranked[0][0]} was the most likely regime, with real doubt"
    else:
        judgement = "the filter could hardly tell the regimes apart"
    return f"Regime probabilities {shares} (entropy {entropy:.2f} nats, {certainty:.2f} of its maximum): {judgement}."


def strategy_selection(d: DecisionToExplain, top: Sequence[Mapping[str, Any]]) -> str:
    """One sentence on how the specialists were weighted and what the blend concluded."""
    parts = ", ".join(
        f"{regime} specialist weight {d.strategy_weights[regime]:.2f} (margin {d.specialist_margins.get(regime, math.nan):+.3f})"
        for regime in REGIMES
    )
    drivers = ", ".join(f"{t['feature']} ({t['shap']:+.3f})" for t in top[:3])
    verdict = f"{d.action} {d.quantity:g}" if d.action != "HOLD" else "HOLD"
    return (
        f"Blend: {parts}; blended score {d.score:+.3f} gives P(up) {d.probability_up:.2f} → {verdict}. "
        f"Largest contributions: {drivers}."
    )
