"""A cycle whose commit fails is narrowed down to the one tick that fails it (real Redis).

The tick passes validation; only its decision cannot be stored: a strategy
records, for that one tick, a regime named by an integer beyond 64 bits,
which the event encoder refuses (``Integer exceeds 64-bit range``, the error a
too-large timestamp used to cause for every commit of its cycle).
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from eventsourcing.persistence import PersistenceError

from aggregates.desk import desk_id
from aggregates.strategies import Strategy, hold
from edge.feeds import SyntheticFeed
from edge.ticks import Tick, encode_tick
from tests.actors.hot_path_support import SYMBOLS, make_hot_path, publish, wait_until_decided
from tests.actors.test_hot_path import decisions_by_symbol, stream_ids


class PoisonsOnePrice(Strategy):
    """Holds on every tick; on a tick at one of ``prices`` the decision carries an unencodable value."""

    def __init__(self, prices: set[float]) -> None:
        super().__init__()
        self.prices = prices

    def decide(self, *, price, **_):
        if price in self.prices:
            return dataclasses.replace(hold(), regime=2**70)
        return hold()


def test_only_the_tick_whose_commit_fails_is_dead_lettered(redis_url, namespace):
    ticks = list(SyntheticFeed(SYMBOLS, seed=12).ticks(40))
    aaa = [t for t in ticks if t.symbol == "AAA"]
    poison = aaa[23]
    assert [t.price for t in aaa].count(poison.price) == 1
    hot = make_hot_path(redis_url, namespace, PoisonsOnePrice({poison.price}))
    publish(hot, ticks)  # all published before the shard starts: its first read takes them in one cycle
    with hot:
        wait_until_decided(hot, len(ticks))
        poison_id = stream_ids(hot, "AAA")[23]
        letters = hot.shard.reader.dead_letters.entries()
        assert [(d["code"], d["stage"], d["entry_id"]) for d in letters] == [
            ("processing_failed", "commit", poison_id)]
        assert "64-bit" in letters[0]["reason"]
        decided = decisions_by_symbol(hot)
        for symbol in SYMBOLS:
            expected = [i for i in stream_ids(hot, symbol) if (symbol, i) != ("AAA", poison_id)]
            assert [d.correlation_id for d in decided[symbol]] == expected  # each exactly once, in order
            assert hot.client.xpending(hot.keys.stream(symbol), "desks")["pending"] == 0

        later = list(SyntheticFeed(SYMBOLS, seed=13, start_ns=ticks[-1].ts_ns + 10**9).ticks(5))
        publish(hot, later)
        wait_until_decided(hot, len(ticks) + len(later))
        decided = decisions_by_symbol(hot)
        assert sum(len(d) for d in decided.values()) == len(ticks) - 1 + len(later)
        assert len(hot.shard.reader.dead_letters.entries()) == 1


def test_a_store_that_cannot_take_the_commit_dead_letters_nothing(redis_url, namespace):
    """Redis refusing writes (maxmemory reached) is not a bad tick: the cycle is redone, nothing dead-lettered."""
    ticks = list(SyntheticFeed(SYMBOLS, seed=14).ticks(10))
    hot = make_hot_path(redis_url, namespace, PoisonsOnePrice(set()))
    hot.shard.reader.ensure_group()
    hot.shard.start_actors()
    publish(hot, ticks)
    batches = hot.shard.reader.read(count=200, block_ms=100)
    limit = hot.client.config_get("maxmemory")["maxmemory"]
    hot.client.config_set("maxmemory", 1)
    try:
        with pytest.raises(PersistenceError):  # the append is refused (OOM); the run loop backs off and redoes
            hot.shard.cycle(batches)
    finally:
        hot.client.config_set("maxmemory", limit)
    assert hot.shard.reader.dead_letters.entries() == []
    assert sum(len(d) for d in decisions_by_symbol(hot).values()) == 0
    hot.stop()

    again = make_hot_path(redis_url, namespace, PoisonsOnePrice(set()))
    with again:  # the same consumer: it gets the unacknowledged ticks back first
        wait_until_decided(again, len(ticks))
        decided = decisions_by_symbol(again)
        for symbol in SYMBOLS:
            assert [d.correlation_id for d in decided[symbol]] == stream_ids(again, symbol)
        assert again.shard.reader.dead_letters.entries() == []


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_running_shard_waits_out_a_store_refusing_its_commands(redis_url, namespace):
    """NOPERM on every script (the append and the desks' loads): no dead letter, the shard keeps running,
    and once the refusal ends each tick is decided exactly once, in order."""
    ticks = list(SyntheticFeed(SYMBOLS, seed=15).ticks(30))
    hot = make_hot_path(redis_url, namespace, PoisonsOnePrice(set()))
    with hot:
        hot.client.execute_command("ACL", "SETUSER", "default", "-@scripting")
        try:
            publish(hot, ticks)
            _wait_for(lambda: hot.shard.refusals >= 3)  # refused, backed off and redone more than once
            assert hot.shard.failure is None
        finally:
            hot.client.execute_command("ACL", "SETUSER", "default", "+@all")
        wait_until_decided(hot, len(ticks))
        assert hot.shard.failure is None
        assert hot.shard.reader.dead_letters.entries() == []
        decided = decisions_by_symbol(hot)
        for symbol in SYMBOLS:
            assert [d.correlation_id for d in decided[symbol]] == stream_ids(hot, symbol)
            assert hot.client.xpending(hot.keys.stream(symbol), "desks")["pending"] == 0


def test_a_snapshot_that_fails_after_the_commit_does_not_redo_the_cycle(redis_url, namespace):
    """The events, dead letters and acks are written; the snapshot write then fails once (its stream is
    not a stream): nothing is redone, so each bad tick is dead-lettered once and each good one decided once."""
    good = [t for t in SyntheticFeed(["AAA"], seed=16).ticks(8)]
    hot = make_hot_path(redis_url, namespace, PoisonsOnePrice(set()), symbols=["AAA"], checkpoint_every=4)
    stream = hot.keys.stream("AAA")
    for i, tick in enumerate(good):
        hot.client.xadd(stream, encode_tick(tick))
        if i % 3 == 0:
            hot.client.xadd(stream, {b"garbage": b"1"})
    hot.client.xadd(stream, encode_tick(Tick("AAA", good[-1].ts_ns + 1, float("nan"), 1.0)))
    hot.shard.reader.ensure_group()
    hot.shard.start_actors()
    # An actor loads its desk in on_start, on its own thread: one answered ask means it has, so the
    # snapshot key below breaks only the write after the commit, not the load.
    hot.shard._alive_actor("AAA").proxy().symbol.get()
    batches = hot.shard.reader.read(count=200, block_ms=100)
    snapshots = f"{{{hot.settings.store_name}}}:snapshots:{desk_id('AAA')}"
    hot.client.set(snapshots, "not a stream")  # XREVRANGE on it: WRONGTYPE, a store error after the commit
    try:
        hot.shard.cycle(batches)
    finally:
        hot.client.delete(snapshots)
    letters = hot.shard.reader.dead_letters.entries()
    assert len(letters) == 4
    assert len({d["entry_id"] for d in letters}) == 4
    assert [d.correlation_id for d in decisions_by_symbol(hot)["AAA"]] == [
        i for i in stream_ids(hot, "AAA") if i not in {d["entry_id"] for d in letters}]
    assert hot.client.xpending(stream, "desks")["pending"] == 0
    hot.stop()
