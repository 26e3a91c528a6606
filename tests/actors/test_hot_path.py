"""The hot path end to end on a real Redis: ticks in, one committed decision per tick out."""

from __future__ import annotations

import math

from actors.runtime import HotPath
from aggregates.desk import SymbolDesk
from aggregates.strategies import SmaCross
from edge.feeds import SyntheticFeed
from edge.ticks import Tick, encode_tick
from tests.actors.hot_path_support import (
    SYMBOLS,
    make_hot_path,
    publish,
    wait_until_decided,
)


def decisions_by_symbol(hot: HotPath) -> dict[str, list[SymbolDesk.DecisionTaken]]:
    found: dict[str, list[SymbolDesk.DecisionTaken]] = {s: [] for s in hot.symbols}
    for notification in hot.app.recorder.select_notifications(start=None, limit=1_000_000):
        event = hot.app.mapper.to_domain_event(notification)
        if isinstance(event, SymbolDesk.DecisionTaken):
            found[event.symbol].append(event)
    return found


def stream_ids(hot: HotPath, symbol: str) -> list[str]:
    return [entry_id.decode() for entry_id, _ in hot.client.xrange(hot.keys.stream(symbol))]


def test_every_tick_gets_exactly_one_committed_decision(redis_url, namespace, policy):
    hot = make_hot_path(redis_url, namespace, policy)
    with hot:
        ticks = publish(hot, SyntheticFeed(SYMBOLS, seed=3).ticks(300))
        wait_until_decided(hot, len(ticks))
        decided = decisions_by_symbol(hot)
        for symbol in SYMBOLS:
            assert [d.correlation_id for d in decided[symbol]] == stream_ids(hot, symbol)
            assert hot.client.xpending(hot.keys.stream(symbol), "desks")["pending"] == 0
        sample = decided["AAA"][-1]
        assert len(sample.features) == len(policy.feature_names)
        assert math.isclose(sum(sample.regime_probs.values()), 1.0)
        assert math.isclose(sum(sample.strategy_weights.values()), 1.0)
        assert sample.model_version == policy.model_version
        assert sample.action in {"BUY", "SELL", "HOLD"}


def test_bad_ticks_on_the_stream_are_dead_lettered_and_the_rest_decided(redis_url, namespace, policy):
    hot = make_hot_path(redis_url, namespace, policy, symbols=["AAA"])
    stream = hot.keys.stream("AAA")
    good = [Tick("AAA", 1_000 + i, 100.0 + i, 1.0) for i in range(5)]
    with hot:
        hot.client.xadd(stream, encode_tick(good[0]))
        hot.client.xadd(stream, {b"garbage": b"1"})
        hot.client.xadd(stream, encode_tick(Tick("AAA", 2_000, float("nan"), 1.0)))
        hot.client.xadd(stream, encode_tick(good[1]))
        hot.client.xadd(stream, encode_tick(Tick("AAA", 5, 100.0, 1.0)))  # time goes backwards
        hot.client.xadd(stream, encode_tick(Tick("ZZZ", 1_002, 100.0, 1.0)))  # wrong stream
        for tick in good[2:]:
            hot.client.xadd(stream, encode_tick(tick))
        wait_until_decided(hot, 9)
        decided = decisions_by_symbol(hot)["AAA"]
        assert [d.price for d in decided] == [t.price for t in good]
        assert hot.shard.stats.snapshot().dead_letters == 4
        letters = hot.shard.reader.dead_letters.entries()
        assert sorted(d["code"] for d in letters) == [
            "bad_price", "malformed", "symbol_mismatch", "time_backwards",
        ]
        assert all(d["stage"] == "desk" and d["entry_id"] for d in letters)
        assert hot.client.xpending(stream, "desks")["pending"] == 0


def test_redelivered_ticks_are_acknowledged_without_a_second_decision(redis_url, namespace, policy):
    hot = make_hot_path(redis_url, namespace, policy)
    with hot:
        ticks = publish(hot, SyntheticFeed(SYMBOLS, seed=4).ticks(50))
        wait_until_decided(hot, len(ticks))
    # As if every ack had been lost: the group hands all entries out again.
    for symbol in SYMBOLS:
        hot.client.xgroup_setid(hot.keys.stream(symbol), "desks", id="0")
    again = make_hot_path(redis_url, namespace, policy)
    with again:
        wait_until_decided(again, len(ticks))
        assert again.stats.snapshot().duplicates_skipped == len(ticks)
        assert again.stats.snapshot().decisions == 0
        assert all(len(d) == 50 for d in decisions_by_symbol(again).values())


def test_a_restart_resumes_from_the_event_store_with_identical_decisions(redis_url, namespace, policy):
    ticks = list(SyntheticFeed(["AAA"], seed=5).ticks(400))
    straight = make_hot_path(redis_url, f"{namespace}a:", policy, ["AAA"], checkpoint_every=64)
    with straight:
        publish(straight, ticks)
        wait_until_decided(straight, len(ticks))
        reference = decisions_by_symbol(straight)["AAA"]

    first = make_hot_path(redis_url, f"{namespace}b:", policy, ["AAA"], checkpoint_every=64)
    with first:
        publish(first, ticks[:150])
        wait_until_decided(first, 150)
    second = make_hot_path(redis_url, f"{namespace}b:", policy, ["AAA"], checkpoint_every=64)
    with second:
        live = second.app.load_desk("AAA")
        assert live == second.app.replay_desk("AAA")  # snapshot + later events = full replay
        publish(second, ticks[150:])
        wait_until_decided(second, 250)
        resumed = decisions_by_symbol(second)["AAA"]
        assert second.app.load_desk("AAA") == second.app.replay_desk("AAA")

    def essence(d):
        return (d.action, d.quantity, d.features, d.regime_probs, d.risk_checks, d.price)

    assert [essence(d) for d in resumed] == [essence(d) for d in reference]


def test_a_strategy_with_a_lookback_resumes_its_price_history_exactly(redis_url, namespace):
    """sma-cross remembers the last slow + 1 prices: a restart restores them from checkpoint + later events."""
    strategy = SmaCross(fast=3, slow=7, fraction=0.2)  # within the 25 % concentration limit: its orders fill
    ticks = list(SyntheticFeed(["AAA"], seed=8).ticks(400))
    straight = make_hot_path(redis_url, f"{namespace}a:", strategy, ["AAA"], checkpoint_every=64)
    with straight:
        publish(straight, ticks)
        wait_until_decided(straight, len(ticks))
        reference = [(d.action, d.quantity, d.price) for d in decisions_by_symbol(straight)["AAA"]]
    assert sum(1 for action, _, _ in reference if action != "HOLD") > 5

    resumed = []
    for start, end in [(0, 130), (130, 131), (131, 260), (260, 400)]:  # restarts around checkpoints
        hot = make_hot_path(redis_url, f"{namespace}b:", strategy, ["AAA"], checkpoint_every=64)
        with hot:
            publish(hot, ticks[start:end])
            wait_until_decided(hot, end - start)
            resumed = decisions_by_symbol(hot)["AAA"]
    assert [(d.action, d.quantity, d.price) for d in resumed] == reference
