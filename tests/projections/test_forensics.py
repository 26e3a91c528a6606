"""SHAP forensics of real decisions: additivity against the recorded blended score."""

from __future__ import annotations

import math

import pytest

from actors.features import FeatureEngine
from aggregates.desk import SymbolDesk
from aggregates.risk import OthersView, RiskLimits
from edge.feeds import SyntheticFeed
from projections.forensics import (
    DecisionToExplain,
    ExplainerCache,
    UnknownModelVersion,
    explain_batch,
    regime_reasoning,
)


def decisions(policy, ticks: int = 400) -> list[DecisionToExplain]:
    engine, desk = FeatureEngine(), None
    for i, tick in enumerate(SyntheticFeed(["AAA"], seed=21).ticks(ticks)):
        desk = desk or SymbolDesk.open("AAA", "0-0", tick.ts_ns)
        features = engine.update(tick.price, tick.size, math.nan, math.nan)
        desk.decide(tick_id=f"{i + 1}-0", ts_ns=tick.ts_ns, price=tick.price, size=tick.size, bid=None,
                    ask=None, features=features, policy=policy, others=OthersView(1_000_000.0),
                    limits=RiskLimits())
    return [
        DecisionToExplain(
            e.decision_id, e.model_version, e.features, e.strategy_weights, e.regime_probs, e.regime_entropy,
            e.specialist_margins, e.score, e.probability_up, e.action, e.quantity,
        )
        for e in desk.collect_events()
        if isinstance(e, SymbolDesk.DecisionTaken)
    ]


def test_shap_values_add_up_to_the_recorded_blended_score(policy, model_registry):
    batch = decisions(policy)
    explained = explain_batch(ExplainerCache(model_registry).get(policy.model_version), batch)
    assert len(explained) == len(batch)
    for d, x in zip(batch, explained):
        assert x.decision_id == d.decision_id
        assert x.expected_value + sum(x.shap_values.values()) == pytest.approx(x.model_output, abs=1e-9)
        assert abs(x.model_output - d.score) < 1e-6, d.decision_id
        magnitudes = [abs(t["shap"]) for t in x.top_features]
        assert len(x.top_features) == 10 and magnitudes == sorted(magnitudes, reverse=True)
        assert max(abs(v) for v in x.shap_values.values()) == pytest.approx(magnitudes[0])
        assert "Regime probabilities" in x.regime_reasoning and "blended score" in x.strategy_selection


def test_one_call_per_batch_equals_one_call_per_decision_to_the_bit(policy, model_registry):
    batch = decisions(policy, 120)[-20:]
    explainers = ExplainerCache(model_registry).get(policy.model_version)
    together = explain_batch(explainers, batch)
    alone = [explain_batch(explainers, [d])[0] for d in batch]
    halves = explain_batch(explainers, batch[:7]) + explain_batch(explainers, batch[7:])
    assert together == alone == halves  # a rebuild's batches differ from the live ones


def test_unknown_version_and_mismatched_batches_are_refused(policy, model_registry):
    cache = ExplainerCache(model_registry)
    with pytest.raises(UnknownModelVersion, match="not in the registry"):
        cache.get("0" * 16)
    d = decisions(policy, 40)[-1]
    with pytest.raises(ValueError, match="features"):
        explain_batch(cache.get(policy.model_version), [DecisionToExplain(**{**d.__dict__, "features": [1.0]})])


def test_regime_sentence_reads_the_numbers():
    sure = regime_reasoning({"bull": 0.9, "bear": 0.05, "sideways": 0.05}, 0.39)
    assert sure.startswith("Regime probabilities bull 90%, bear 5%, sideways 5%") and "fairly sure of a bull" in sure
    assert "hardly tell" in regime_reasoning({"bull": 0.34, "bear": 0.33, "sideways": 0.33}, 1.0986)
