"""Tick streams of symbols nobody trades are emptied into the dead letters, each entry once (real Redis)."""

from __future__ import annotations

import redis

from edge.stray_streams import StraySweeper, sweep_stray_streams
from edge.tick_stream import TickKeys, TickPublisher, TickReader
from edge.ticks import Tick


def test_entries_of_unknown_symbols_are_dead_lettered_once_and_known_streams_are_left(redis_url, key_prefix):
    client = redis.Redis.from_url(redis_url)
    keys = TickKeys(key_prefix)
    TickPublisher(client, keys, ["GOOG"]).publish([Tick("GOOG", 1, 100.0, 1.0)])
    stray = [client.xadd(keys.stream("NOPE"), {b"sym": b"NOPE", b"ts": str(i).encode(), b"px": b"1", b"sz": b"1"})
             for i in range(3)]
    weird = keys.prefix.encode() + b"ticks:\xff\x00bad"
    client.xadd(weird, {b"\xfe": b"\x00" * 10})
    client.xadd(keys.prefix + "not-ticks:X", {b"a": b"1"})  # outside the tick streams: not ours to judge
    client.set(keys.prefix + "ticks:string", b"x")            # not a stream

    assert sweep_stray_streams(client, keys, ["GOOG"]) == 4
    assert sweep_stray_streams(client, keys, ["GOOG"]) == 0  # nothing is moved twice
    letters = TickReader(client, keys, ["GOOG"]).dead_letters
    rows = letters.entries()
    assert [(r["code"], r["stage"]) for r in rows] == [("unknown_symbol", "sweep")] * 4
    assert sorted(r["entry_id"] for r in rows if r["symbol"] == "NOPE") == sorted(i.decode() for i in stray)
    assert letters.counts() == {"unknown_symbol": 4}
    assert client.xlen(keys.stream("NOPE")) == 0 and client.xlen(weird) == 0
    assert client.xlen(keys.stream("GOOG")) == 1 and client.xlen(keys.prefix + "not-ticks:X") == 1


def test_entries_a_consumer_group_was_handed_stay(redis_url, key_prefix):
    """A symbol traded by an earlier run: what its desks read is history, only later entries are strays."""
    client = redis.Redis.from_url(redis_url)
    keys = TickKeys(key_prefix)
    reader = TickReader(client, keys, ["OLD"])
    reader.ensure_group()
    TickPublisher(client, keys, ["OLD"]).publish([Tick("OLD", i, 100.0, 1.0) for i in range(3)])
    reader.read(count=10, block_ms=10)
    late = client.xadd(keys.stream("OLD"), {b"sym": b"OLD", b"ts": b"9", b"px": b"1", b"sz": b"1"})

    sweeper = StraySweeper(client, keys, [], every_s=3600)
    assert sweeper.maybe_sweep() == 1
    assert sweeper.maybe_sweep() == 0  # not due again for an hour
    assert [r["entry_id"] for r in reader.dead_letters.entries()] == [late.decode()]
    assert client.xlen(keys.stream("OLD")) == 3
