"""The kill switch on the real Redis: recorded first, in force within a cycle, flattening, automatic, lasting."""

from __future__ import annotations

import time

import orjson
import pytest

from actors.desk_actor import ActorSettings
from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from actors.trading_control import TradingControl
from aggregates.desk import SymbolDesk
from aggregates.errors import TradingSwitchError
from aggregates.policy import DecisionPolicy, Sizing
from aggregates.risk import RiskLimits
from edge.feeds import SyntheticFeed
from edge.shared_book import TradingState
from edge.system_keys import SystemKeys
from tests.actors.hot_path_support import publish, wait_until_decided

SYMBOLS = SyntheticFeed.symbol_names(4)


def hot_path(redis_url: str, namespace: str, policy, limits: RiskLimits = RiskLimits()) -> HotPath:
    settings = HotPathSettings(redis_url, namespace=namespace,
                               shard=ShardSettings(actor=ActorSettings(limits=limits)))
    return HotPath(settings, SYMBOLS, policy)


def events_of(hot: HotPath, since: int = 0) -> list:
    return [hot.app.mapper.to_domain_event(n)
            for n in hot.app.recorder.select_notifications(start=since + 1, limit=1_000_000)]


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_halt_is_recorded_then_put_in_force_and_a_resume_likewise(redis_url, namespace) -> None:
    control = TradingControl(redis_url, SystemKeys(namespace))
    try:
        assert control.in_force() is None and control.recorded() == TradingState()
        halted = control.halt("cli:ops", "desk review", flatten=True)
        assert (halted.halted, halted.flatten, halted.by, halted.reason) == (True, True, "cli:ops", "desk review")
        assert control.in_force() == halted == control.recorded()
        with pytest.raises(TradingSwitchError, match="reason"):
            control.halt("cli:ops", "")
        resumed = control.resume("api:local", "done")
        assert not resumed.halted and control.in_force() == resumed
        with pytest.raises(TradingSwitchError, match="not halted"):
            control.resume("api:local")
        assert [(h["event"], h["by"]) for h in control.history()] == [
            ("Risk.Trading.Halted.v1", "cli:ops"), ("Risk.Trading.Resumed.v1", "api:local")]
    finally:
        control.close()


def test_what_is_recorded_wins_over_what_is_written_and_older_never_replaces_newer(redis_url, namespace) -> None:
    keys = SystemKeys(namespace)
    control = TradingControl(redis_url, keys)
    try:
        halted = control.halt("cli:ops", "desk review")
        # A crash between recording and writing: the key still says running (an older version) ...
        control._client.set(keys.trading_state, orjson.dumps(TradingState(version=1).as_dict()))
        assert control.sync() == halted and control.in_force() == halted  # ... which the next start mends
        control._put_in_force(TradingState(version=1))  # a stale writer racing: refused
        assert control.in_force() == halted
        control._client.delete(keys.trading_state)
        assert control.sync() == halted
    finally:
        control.close()


def test_within_a_cycle_of_a_halt_no_desk_grows_and_a_flattening_halt_closes_every_position(
        redis_url, namespace, policy) -> None:
    ticks = list(SyntheticFeed(SYMBOLS, seed=12).ticks(900))
    hot = hot_path(redis_url, namespace, policy)
    control = TradingControl(redis_url, SystemKeys(namespace))
    try:
        with hot:
            publish(hot, ticks[:1_200])
            wait_until_decided(hot, 1_200)
            positions = {s: hot.app.load_desk(s).position for s in SYMBOLS}
            assert any(positions.values())
            head = hot.app.recorder.max_notification_id()
            control.halt("cli:ops", "desk review")
            wait_until(lambda: hot.book.trading.halted)  # the shard's next read brought it: one cycle
            publish(hot, ticks[1_200:2_400])
            wait_until_decided(hot, 2_400)
            during = events_of(hot, head)
            decisions = [e for e in during if isinstance(e, SymbolDesk.DecisionTaken)]
            assert len(decisions) == 1_200
            assert all("trading_halted" in {c["name"] for c in d.risk_checks} for d in decisions)
            for fill in (e for e in during if isinstance(e, SymbolDesk.OrderFilled)):
                before = positions[fill.symbol]
                assert abs(fill.position_after) <= abs(before) and fill.position_after * before >= 0
                positions[fill.symbol] = fill.position_after

            head = hot.app.recorder.max_notification_id()
            control.halt("cli:ops", "close the book", flatten=True)
            wait_until(lambda: hot.book.trading.flatten)
            publish(hot, ticks[2_400:2_800])
            wait_until_decided(hot, 2_800)
            assert all(hot.app.load_desk(s).position == 0.0 for s in SYMBOLS)
            fills = [e for e in events_of(hot, head) if isinstance(e, SymbolDesk.OrderFilled)]
            assert {f.symbol for f in fills} == {s for s, p in positions.items() if p}
            assert len(fills) == len({f.symbol for f in fills})  # one closing order each, then nothing

            control.resume("cli:ops", "done")
            wait_until(lambda: not hot.book.trading.halted)
            head = hot.app.recorder.max_notification_id()
            publish(hot, ticks[2_800:])
            wait_until_decided(hot, len(ticks))
            after = [e for e in events_of(hot, head) if isinstance(e, SymbolDesk.DecisionTaken)]
            assert not any("trading_halted" in {c["name"] for c in d.risk_checks} for d in after)
    finally:
        control.close()


def test_breaking_the_daily_loss_limit_halts_by_itself_and_the_halt_outlasts_a_restart(
        redis_url, namespace, policy) -> None:
    sized = DecisionPolicy(policy.specialists, sizing=Sizing(target_fraction=0.25))
    limits = RiskLimits(daily_loss_limit=0.001)
    ticks = list(SyntheticFeed(SYMBOLS, seed=4).ticks(1_500))
    keys = SystemKeys(namespace)
    control = TradingControl(redis_url, keys)
    try:
        with hot_path(redis_url, namespace, sized, limits) as hot:
            publish(hot, ticks)
            wait_until_decided(hot, len(ticks))
            assert hot.book.trading.halted
        recorded = control.recorded()
        assert (recorded.halted, recorded.reason, recorded.by) == (True, "daily_loss_limit", "shard-0")
        assert [h["event"] for h in control.history()] == ["Risk.Trading.Halted.v1"]  # recorded once
        control._client.delete(keys.trading_state)  # even the state the desks read lost: the record stands
        with hot_path(redis_url, namespace, sized, limits) as again:
            assert again.book.trading.halted  # read at start, before the first tick
            assert control.in_force() == recorded
    finally:
        control.close()
