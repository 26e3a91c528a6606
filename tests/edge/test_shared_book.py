"""The shared book in Redis: what a shard publishes, and what it makes of a malformed figure set (the real Redis)."""

from __future__ import annotations

import orjson
import pytest
import redis

from edge.shared_book import SharedBook, ShardBook, TradingState
from edge.system_keys import SystemKeys


def test_figures_round_trip_and_bad_ones_are_refused_with_the_reason() -> None:
    figures = ShardBook(-12.5, 3.0, 4_000.0, 0.5, 1_700_000_000_000)
    assert ShardBook.from_json(figures.to_json()) == figures
    for raw, reason in [(b"[]", "not a JSON object"), (b'{"pnl": "1"}', "pnl"),
                        (b'{"pnl": 1, "day_pnl": 0, "gross_exposure": -1, "share": 0.5}', "negative"),
                        (b'{"pnl": 1, "day_pnl": 0, "gross_exposure": 1, "share": 2}', "share"),
                        (b'{"pnl": 1, "day_pnl": 0, "gross_exposure": 1, "share": 1, "published_ms": -3}',
                         "published_ms")]:
        with pytest.raises(ValueError, match=reason):
            ShardBook.from_json(raw)


def test_a_shard_reads_the_others_not_itself_and_keeps_the_last_good_figures_of_a_garbled_one(
        redis_url, namespace, caplog) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = SystemKeys(namespace)
    key = keys.risk_book
    one, two = (SharedBook(client, key, name, keys.trading_state) for name in ("shard-0", "shard-1"))
    one.publish(ShardBook(1.0, 0.5, 10.0, 0.5, 1))
    two.publish(ShardBook(2.0, -0.5, 20.0, 0.5, 2))
    assert one.read_others() == {"shard-1": ShardBook(2.0, -0.5, 20.0, 0.5, 2)}
    client.hset(key, "shard-1", b"{not json")
    client.hset(key, "shard-9", b'{"pnl": NaN}')
    assert one.read_others() == {"shard-1": ShardBook(2.0, -0.5, 20.0, 0.5, 2)}  # last good; shard-9 never good
    assert one.read_others() == one.latest
    errors = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(errors) == 2  # once per bad value, not once a read
    client.close()


def test_the_switch_reads_running_when_unset_and_halted_when_unreadable(redis_url, namespace) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = SystemKeys(namespace)
    book = SharedBook(client, keys.risk_book, "shard-0", keys.trading_state)
    book.read_others()
    assert book.trading == TradingState()
    halted = TradingState(True, True, "desk review", "cli:ops", "2026-12-02T10:00:00+00:00", 3)
    client.set(keys.trading_state, orjson.dumps(halted.as_dict()))
    book.read_others()
    assert book.trading == halted
    for garbled in (b"nope", b'{"state": "paused"}', b'{"state": "running", "version": -1}'):
        client.set(keys.trading_state, garbled)
        book.read_others()
        assert book.trading.halted and book.trading.reason == "unreadable trading state"
    client.close()
