"""The compiled policy core decides exactly as the Python composition of its parts did (pure code).

``reference_decide`` is the regime-blend policy as it was written before the
core was compiled: regime filter, specialists, ``validate_weights``, ``blend``,
and sizing, each called on its own (risk is the desk's: :func:`through_risk`). Every figure of
``DecisionPolicy.decide`` must equal it bit for bit (compared through ``repr``,
which tells every float apart, -0.0 and NaN included).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.features import FeatureEngine
from aggregates.blend import Action, blend, validate_weights
from aggregates.errors import FeatureMismatch
from aggregates.policy import DecisionPolicy, PolicyDecision, _first_max
from aggregates.policy_kernel import _fsum
from aggregates.strategies import through_risk
from aggregates.regime import REGIMES, regime_step
from aggregates.risk import OthersView, RiskLimits


def reference_decide(policy: DecisionPolicy, *, features, prior_regime_probs, price, position,
                     own_pnl, own_day_pnl, others) -> PolicyDecision:
    x = np.asarray(features, dtype=np.float64)
    prev = np.asarray(prior_regime_probs, dtype=np.float64) if len(prior_regime_probs) else policy._initial
    volatility = x[policy._volatility_index]
    with np.errstate(all="ignore"):  # what the kernel does with an overflowing z too
        z = x[policy._return_index] / volatility if volatility > 0 else math.nan
    probs = np.empty(len(REGIMES), dtype=np.float64)
    entropy = float(regime_step(prev, z, policy._trans, policy._means, policy._stds, probs))
    prob_list = probs.tolist()
    weights = validate_weights(prob_list)
    margins = np.empty(len(REGIMES), dtype=np.float64)
    policy.specialists.margins(x, margins)
    margin_list = margins.tolist()
    blended = blend(margin_list, weights.weights, policy.thresholds)
    equity = others.capital + others.pnl + own_pnl
    side, quantity = policy._order(blended.direction, equity, price, position)
    return PolicyDecision(
        regime=REGIMES[_first_max(prob_list)],
        regime_probs=dict(zip(REGIMES, prob_list)),
        regime_entropy=entropy,
        weights=weights,
        strategy_weights=dict(zip(REGIMES, weights.weights)),
        specialist_margins=dict(zip(REGIMES, margin_list)),
        blend=blended,
        action=side,
        side=side,
        requested_quantity=quantity,
        quantity=quantity,
        risk=None,
    )


def both(policy: DecisionPolicy, **inputs) -> tuple[str, str]:
    def outcome(decide):
        try:
            return repr(decide(**inputs))
        except Exception as error:  # noqa: BLE001 - the same error either way is part of "the same"
            return f"raised {error!r}"

    return outcome(lambda **kw: policy.decide(history=(), **kw)), outcome(lambda **kw: reference_decide(policy, **kw))


floats = st.floats(allow_nan=True, allow_infinity=True)
moderate = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def test_a_live_like_run_decides_as_the_reference_tick_for_tick(policy: DecisionPolicy) -> None:
    """Synthetic prices through the feature engine, positions that grow until the risk limits refuse."""
    rng = np.random.default_rng(7)
    engine = FeatureEngine()
    price, position, prior = 100.0, 0.0, []
    rejected = filled = 0
    for _ in range(4_000):
        price *= math.exp(rng.normal(0, 0.002))
        features = engine.update(price, float(rng.integers(1, 500)), price - 0.01, price + 0.01)
        others = OthersView(1_000_000.0, float(rng.normal(0, 1_000)), float(rng.normal(0, 500)),
                            float(rng.uniform(0, 1.6e6)))
        inputs = dict(features=features, prior_regime_probs=prior, price=price, position=position,
                      own_pnl=float(rng.normal(0, 100)), own_day_pnl=float(rng.normal(0, 50)), others=others)
        new, old = both(policy, **inputs)
        assert new == old
        # The desk puts the proposal through risk: positions grow until the limits refuse.
        decision = through_risk(policy.decide(history=(), **inputs), price=price, position=position,
                                own_pnl=inputs["own_pnl"], own_day_pnl=inputs["own_day_pnl"], others=others,
                                limits=RiskLimits())
        prior = list(decision.regime_probs.values())
        rejected += decision.rejected
        if decision.action != Action.HOLD:
            filled += 1
            position += decision.quantity if decision.action == Action.BUY else -decision.quantity
    assert rejected > 0 and filled > 0  # both branches were compared


@given(st.lists(st.tuples(
    st.lists(floats, min_size=20, max_size=20),
    st.one_of(st.just([]), st.lists(floats, min_size=3, max_size=3),
              st.lists(st.floats(0, 1), min_size=3, max_size=3).map(lambda v: [p / (sum(v) or 1) for p in v])),
    st.one_of(st.floats(min_value=1e-300, max_value=1e300), st.sampled_from([0.0, 1.0, 100.0])),
    st.one_of(moderate, floats), st.one_of(moderate, floats), st.one_of(moderate, floats),
    st.tuples(st.one_of(st.just(1e6), floats), moderate, moderate, st.one_of(moderate, floats)),
), min_size=1, max_size=20))
def test_any_inputs_give_the_reference_decision_or_its_error(policy: DecisionPolicy, cases) -> None:
    for features, prior, price, position, own_pnl, own_day_pnl, others in cases:
        new, old = both(policy, features=features, prior_regime_probs=prior, price=price, position=position,
                        own_pnl=own_pnl, own_day_pnl=own_day_pnl, others=OthersView(*others))
        assert new == old


@given(st.lists(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=0, max_size=6),
                min_size=1, max_size=50))
def test_the_compiled_fsum_is_math_fsum(rows) -> None:
    for values in rows:
        try:
            expected = math.fsum(values)
        except OverflowError:
            expected = math.nan  # the kernel's "not finite": the policy then blends in Python, which raises
        got = _fsum(np.asarray(values, dtype=np.float64), len(values))
        assert repr(got) == repr(expected), values


def test_a_feature_vector_of_the_wrong_length_is_refused(policy: DecisionPolicy) -> None:
    with pytest.raises(FeatureMismatch, match="20 features"):
        policy.decide(features=[0.0] * 19, prior_regime_probs=[], price=1.0, position=0.0, own_pnl=0.0,
                      own_day_pnl=0.0, others=OthersView(1e6))
