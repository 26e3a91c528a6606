"""The kill switch aggregate and what a halt does to an order (pure code)."""

from __future__ import annotations

import pytest

from aggregates.blend import Action
from aggregates.errors import TradingSwitchError
from aggregates.risk import OthersView, RiskLimits, assess_order
from aggregates.strategies import hold, order, through_risk
from aggregates.trading_switch import SWITCH_ID, TradingSwitch


def test_a_halt_and_a_resume_are_recorded_with_who_and_why() -> None:
    switch = TradingSwitch.install()
    assert switch.id == SWITCH_ID and not switch.halted
    switch.halt("api:ops", "desk review", flatten=True)
    assert (switch.halted, switch.flatten, switch.by, switch.reason) == (True, True, "api:ops", "desk review")
    switch.resume("cli:root", "review done")
    assert (switch.halted, switch.flatten, switch.by) == (False, False, "cli:root")
    topics = [type(e).TOPIC for e in switch.collect_events()]
    assert topics == ["Risk.Trading.Switch.Installed", "Risk.Trading.Halted", "Risk.Trading.Resumed"]


def test_a_halt_needs_a_reason_and_a_resume_needs_a_halt() -> None:
    switch = TradingSwitch.install()
    with pytest.raises(TradingSwitchError, match="reason"):
        switch.halt("cli:root", "  ")
    with pytest.raises(TradingSwitchError, match="not halted"):
        switch.resume("cli:root")


HALTED = OthersView(1e6, halted=True)


def decide(proposal, position: float, others: OthersView = HALTED):
    return through_risk(proposal, price=100.0, position=position, own_pnl=0.0, own_day_pnl=0.0, others=others,
                        limits=RiskLimits())


def test_during_a_halt_no_order_opens_or_grows_a_position() -> None:
    for position, proposal in [(0.0, order(Action.BUY, 10)), (50.0, order(Action.BUY, 10)),
                               (-50.0, order(Action.SELL, 10))]:
        decided = decide(proposal, position)
        assert decided.action == Action.HOLD and decided.quantity == 0.0
        assert {c.name: c.passed for c in decided.risk.checks}["trading_halted"] is False


def test_during_a_halt_closing_passes_and_going_through_zero_is_cut_at_zero() -> None:
    closing = decide(order(Action.SELL, 30), 50.0)
    assert (closing.action, closing.quantity, closing.risk.passed) == (Action.SELL, 30, True)
    through = decide(order(Action.SELL, 80), 50.0)
    assert (through.action, through.quantity) == (Action.SELL, 50.0)  # cut: flat, never short
    assert not through.risk.passed


def test_every_decision_during_a_halt_says_so_a_hold_included() -> None:
    held = decide(hold(), 0.0)
    assert held.action == Action.HOLD
    assert [(c.name, c.passed) for c in held.risk.checks] == [("trading_halted", True)]
    assert decide(hold(), 0.0, OthersView(1e6)).risk is None  # not halted: a HOLD checks nothing


def test_a_flattening_halt_closes_the_position_whatever_the_strategy_says() -> None:
    flattening = OthersView(1e6, halted=True, flatten=True)
    for position, side in [(40.0, Action.SELL), (-40.0, Action.BUY)]:
        for proposal in (hold(), order(Action.BUY, 5), order(Action.SELL, 5)):
            decided = decide(proposal, position, flattening)
            assert (decided.action, decided.quantity) == (side, 40.0)
    assert decide(hold(), 0.0, flattening).action == Action.HOLD


def test_a_halt_check_is_only_there_during_a_halt() -> None:
    running = assess_order(+1, 1, 100.0, 0.0, 0.0, 0.0, OthersView(1e6), RiskLimits())
    assert "trading_halted" not in {c.name for c in running.checks}
