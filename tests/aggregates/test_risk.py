"""Pre-trade risk checks (pure code)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregates.risk import OthersView, RemoteShard, RiskLimits, assess_order, view_skew_ms

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


def test_leverage_counts_other_desks_exposure_as_it_may_have_moved_since_seen():
    result = assess(+1, 2_000, gross_exposure=1_400_000)
    assert not result.passed
    leverage = {c.name: c for c in result.checks}["leverage"]
    assert not leverage.passed
    move = LIMITS.stale_move  # the other desks' 1.4M may have moved against the book by this since seen
    assert result.max_quantity == pytest.approx((1.5 * (CAPITAL - move * 1_400_000) - 1_400_000 * (1 + move)) / 100)
    exact = assess_order(+1, 2_000, 100.0, 0.0, 0.0, 0.0, OthersView(CAPITAL, gross_exposure=1_400_000),
                         RiskLimits(stale_move=0.0))
    assert exact.max_quantity == pytest.approx(1_000)


def test_daily_loss_blocks_new_risk_but_allows_reducing():
    result = assess(+1, 10, day_pnl=-25_000)
    assert not result.passed
    assert result.max_quantity == 0.0
    reducing = assess(-1, 500, position=1_000, day_pnl=-25_000)
    assert reducing.passed


def test_reducing_an_oversized_position_always_passes():
    assert assess(-1, 1_000, position=5_000, gross_exposure=2_000_000).passed


def test_another_shard_counts_at_its_full_share_of_the_leverage_budget():
    # Half the book's budget (1.5 x 1M) belongs to a shard holding nothing yet: this one may
    # use only its own half, less the headroom for what the other shard's book might move; that
    # shard may have filled its half since it was seen, so the headroom is for 750k moving.
    idle = OthersView(CAPITAL, remote=(RemoteShard(0.0, 0.5),))
    result = assess(+1, 8_000, price=100.0, remote=idle.remote)
    assert not result.passed
    safe_equity = CAPITAL - LIMITS.stale_move * 0.5 * 1.5 * CAPITAL
    assert {c.name: c for c in result.checks}["leverage"].max_quantity == pytest.approx(0.5 * 1.5 * safe_equity / 100)
    # A shard over its share counts at what it holds (plus the assumed move).
    busy = assess(+1, 1, price=100.0, gross_exposure=1_000_000.0, remote_exposure=1_000_000.0,
                  remote=(RemoteShard(1_000_000.0, 0.5),))
    equity = CAPITAL - LIMITS.stale_move * 1_000_000.0
    assert busy.checks[2].max_quantity == pytest.approx((1.5 * equity - 1_000_000.0 * (1 + LIMITS.stale_move)) / 100)


def test_another_shard_that_holds_less_than_its_share_may_have_filled_it_unseen():
    # Seen holding nothing, it may hold its whole share (0.5 x 1.5 x 1M) by now, moved against the book.
    result = assess(+1, 1, remote=(RemoteShard(0.0, 0.5),))
    concentration = {c.name: c for c in result.checks}["position_concentration"]
    assert concentration.max_quantity == pytest.approx((CAPITAL - LIMITS.stale_move * 750_000.0) * 0.25 / 100)


def test_shards_not_published_yet_count_as_fully_invested():
    result = assess(+1, 1, unseen_share=1.0)
    assert not result.passed
    assert {c.name: c for c in result.checks}["leverage"].max_quantity == 0.0


def test_another_shards_positions_are_assumed_to_have_moved_against_the_book():
    moved = LIMITS.stale_move * 2_000_000.0
    result = assess(+1, 1, remote_exposure=2_000_000.0, gross_exposure=2_000_000.0,
                    remote=(RemoteShard(2_000_000.0, 0.9),))
    concentration = {c.name: c for c in result.checks}["position_concentration"]
    assert concentration.max_quantity == pytest.approx((CAPITAL - moved) * 0.25 / 100)
    daily = {c.name: c for c in result.checks}["daily_loss"]
    assert daily.value == pytest.approx(moved / CAPITAL)


def test_a_desk_alone_has_no_headroom_and_the_whole_budget():
    alone = assess(+1, 14_999, gross_exposure=0.0)
    assert {c.name: c for c in alone.checks}["leverage"].max_quantity == pytest.approx(15_000)
    assert alone.checks[0].max_quantity == pytest.approx(2_500)


def test_a_tick_outside_the_view_window_is_as_far_as_it_lies_outside():
    assert view_skew_ms(1_000, None) == 0.0  # in step (a backtest)
    assert view_skew_ms(1_000, (990.0, math.inf)) == 0.0  # the others decided up to 990, none behind
    assert view_skew_ms(1_000, (1_250.0, math.inf)) == 250.0  # others already decided 250 ms past this tick
    assert view_skew_ms(1_000, (900.0, 700.0)) == 300.0  # some desk has still to decide from 700 on


def test_an_order_far_from_the_view_may_only_reduce():
    view = OthersView(capital=CAPITAL)
    skewed = assess_order(+1, 100, 100.0, 0.0, 0.0, 0.0, view, LIMITS, view_skew_ms=LIMITS.max_view_skew_ms + 1)
    assert not skewed.passed and skewed.max_quantity == 0.0
    assert skewed.checks[-1].name == "book_view_skew" and skewed.checks[-1].value == LIMITS.max_view_skew_ms + 1
    assert any(r.startswith("book_view_skew") for r in skewed.reasons)
    reducing = assess_order(-1, 50, 100.0, 100.0, 0.0, 0.0, view, LIMITS, view_skew_ms=10_000.0)
    assert reducing.passed and reducing.max_quantity == pytest.approx(100.0)
    within = assess_order(+1, 100, 100.0, 0.0, 0.0, 0.0, view, LIMITS, view_skew_ms=LIMITS.max_view_skew_ms)
    assert within.passed and [c.name for c in within.checks] == ["position_concentration", "daily_loss", "leverage"]


def test_limits_are_validated():
    with pytest.raises(ValueError):
        RiskLimits(max_leverage=math.nan)
    with pytest.raises(ValueError):
        RiskLimits(max_position_fraction=0)
    with pytest.raises(ValueError):
        RiskLimits(stale_move=1.0)
    with pytest.raises(ValueError):
        RiskLimits(max_view_skew_ms=0)


def test_audit_form_is_json_safe():
    import json

    for check in assess(+1, 100).checks + assess(+1, 10, day_pnl=-2_000_000).checks:
        json.dumps(check.as_dict(), allow_nan=False)


def dataclass_built_assessment(side, quantity, price, position, own_pnl, own_day_pnl, others, limits):
    """``assess_order`` as it was written with the dataclasses' own ``__init__`` (the reference)."""
    from aggregates.risk import QUANTITY_EPSILON, CheckResult, RiskAssessment, _ratio

    equity = others.capital + others.pnl + own_pnl
    full_budget = max(equity, 0.0) * limits.max_leverage
    exposed = (others.gross_exposure - others.remote_exposure + others.unseen_share * full_budget
               + sum(max(s.gross_exposure, s.share * full_budget) for s in others.remote))
    unseen_loss = limits.stale_move * exposed
    safe_equity = max(equity - unseen_loss, 0.0)
    after = position + side * quantity
    reducing = abs(position) if side * position < 0 else 0.0
    cap = safe_equity * limits.max_position_fraction / price
    concentration = CheckResult("position_concentration",
                                abs(after) <= cap + QUANTITY_EPSILON or abs(after) < abs(position),
                                _ratio(abs(after) * price, safe_equity), limits.max_position_fraction,
                                max(cap - side * position, reducing, 0.0))
    budget = safe_equity * limits.max_leverage
    held = (others.gross_exposure - others.remote_exposure) * (1.0 + limits.stale_move) + others.unseen_share * budget
    for shard in others.remote:
        held += max(shard.gross_exposure * (1.0 + limits.stale_move), shard.share * budget)
    gross_cap = (budget - held) / price
    leverage = CheckResult("leverage", abs(after) <= gross_cap + QUANTITY_EPSILON or abs(after) < abs(position),
                           _ratio(held + abs(after) * price, safe_equity), limits.max_leverage,
                           max(gross_cap - side * position, reducing, 0.0))
    day_pnl = others.day_pnl + own_day_pnl
    day_loss = _ratio(limits.stale_move * others.gross_exposure - day_pnl, equity - day_pnl)
    breached = day_loss >= limits.daily_loss_limit
    daily = CheckResult("daily_loss", not breached or abs(after) < abs(position), day_loss,
                        limits.daily_loss_limit, reducing if breached else math.inf)
    checks = (concentration, daily, leverage)
    return RiskAssessment(all(c.passed for c in checks), checks, min(c.max_quantity for c in checks))


any_float = st.floats(allow_nan=True, allow_infinity=True)
some_float = st.one_of(any_float, st.floats(-1e7, 1e7), st.sampled_from([0.0, -0.0, 1e-300, 1e300, 5e-324]))


@given(st.lists(st.tuples(st.sampled_from([1, -1]), st.floats(1e-9, 1e9), some_float.filter(lambda p: p != 0),
                          some_float, some_float, some_float, some_float, some_float, some_float),
                min_size=1, max_size=50))
def test_assessments_built_without_init_equal_the_dataclass_built_ones(orders) -> None:
    # Compared through repr (every float told apart, -0.0 and NaN included), attribute by attribute.
    for side, quantity, price, position, own_pnl, own_day_pnl, pnl, day_pnl, gross in orders:
        remote = (RemoteShard(abs(gross) * 0.3, 0.25),) if gross == gross and abs(gross) < 1e300 else ()
        inputs = (side, quantity, price, position, own_pnl, own_day_pnl,
                  OthersView(CAPITAL, pnl, day_pnl, gross, remote, 0.25 if remote else 0.0,
                             sum(r.gross_exposure for r in remote)), LIMITS)
        try:
            fast = assess_order(*inputs)
        except ZeroDivisionError as error:  # the same refusal either way is "the same"
            fast = error
        try:
            reference = dataclass_built_assessment(*inputs)
        except ZeroDivisionError as error:
            reference = error
        assert repr(fast) == repr(reference)
        if not isinstance(fast, Exception):
            assert repr([vars(c) for c in fast.checks]) == repr([vars(c) for c in reference.checks])
            assert list(vars(fast)) == list(vars(reference))
            assert fast.reasons == reference.reasons
