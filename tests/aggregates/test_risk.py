"""Pre-trade risk checks (pure code)."""

import math

import pytest

from aggregates.risk import OthersView, RiskLimits, assess_order

LIMITS = RiskLimits()
CAPITAL = 1_000_000.0


def assess(side, quantity, price=100.0, position=0.0, own_pnl=0.0, own_day_pnl=0.0, **others):
    view = OthersView(capital=CAPITAL, **others)
    return assess_order(side, quantity, price, position, own_pnl, own_day_pnl, view, LIMITS)


def test_small_order_passes_every_check():
    result = assess(+1, 100)
    assert result.passed
    assert [c.name for c in result.checks] == ["position_concentration", "daily_loss", "leverage"]
    assert all(c.passed for c in result.checks)


def test_concentration_rejects_above_a_quarter_and_names_the_largest_passing_quantity():
    result = assess(+1, 3_000)  # 300k of 1M equity
    assert not result.passed
    assert result.max_quantity == pytest.approx(2_500)
    assert any(r.startswith("position_concentration") for r in result.reasons)
    assert assess(+1, result.max_quantity).passed


def test_max_quantity_accounts_for_the_existing_position():
    result = assess(+1, 2_000, position=1_000)
    assert not result.passed
    assert result.max_quantity == pytest.approx(1_500)


def test_leverage_counts_other_desks_exposure():
    result = assess(+1, 2_000, gross_exposure=1_400_000)
    assert not result.passed
    leverage = {c.name: c for c in result.checks}["leverage"]
    assert not leverage.passed
    assert result.max_quantity == pytest.approx(1_000)


def test_daily_loss_blocks_new_risk_but_allows_reducing():
    result = assess(+1, 10, day_pnl=-25_000)
    assert not result.passed
    assert result.max_quantity == 0.0
    reducing = assess(-1, 500, position=1_000, day_pnl=-25_000)
    assert reducing.passed


def test_reducing_an_oversized_position_always_passes():
    assert assess(-1, 1_000, position=5_000, gross_exposure=2_000_000).passed


def test_limits_are_validated():
    with pytest.raises(ValueError):
        RiskLimits(max_leverage=math.nan)
    with pytest.raises(ValueError):
        RiskLimits(max_position_fraction=0)


def test_audit_form_is_json_safe():
    import json

    for check in assess(+1, 100).checks + assess(+1, 10, day_pnl=-2_000_000).checks:
        json.dumps(check.as_dict(), allow_nan=False)
