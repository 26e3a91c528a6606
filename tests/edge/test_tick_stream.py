"""Publishing, reading and dead-lettering ticks on a real Redis."""

import math

import pytest
import redis

from edge.tick_stream import TickKeys, TickPublisher, TickReader
from edge.ticks import Tick


@pytest.fixture
def client(redis_url):
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


@pytest.fixture
def keys(client, key_prefix):
    keys = TickKeys(f"{key_prefix}:")
    yield keys
    for key in client.scan_iter(match=f"{keys.prefix}*"):
        client.delete(key)


def test_good_ticks_reach_their_streams_and_bad_ones_the_dead_letters(client, keys):
    publisher = TickPublisher(client, keys, ["GOOG", "BTC"])
    report = publisher.publish(
        [
            Tick("GOOG", 10, 100.0, 5.0),
            Tick("GOOG", 9, 101.0, 5.0),  # backwards
            Tick("BTC", 10, math.nan, 1.0),
            Tick("BTC", 11, 50_000.0, -1.0),
            Tick("MSFT", 12, 300.0, 1.0),  # unknown symbol
            Tick("BTC", 12, 50_000.0, 0.5),
        ]
    )
    assert report.accepted == 2
    assert report.rejected == {"time_backwards": 1, "bad_price": 1, "bad_size": 1, "unknown_symbol": 1}
    assert client.xlen(keys.stream("GOOG")) == 1
    assert client.xlen(keys.stream("BTC")) == 1
    reader = TickReader(client, keys, ["GOOG", "BTC"])
    assert reader.dead_letters.counts() == report.rejected
    letters = reader.dead_letters.entries()
    assert [d["code"] for d in letters] == ["time_backwards", "bad_price", "bad_size", "unknown_symbol"]
    assert all(d["stage"] == "ingest" and d["reason"] for d in letters)
    assert "sym=MSFT" in letters[-1]["payload"]


def test_reader_redelivers_unacknowledged_entries_page_by_page(client, keys):
    publisher = TickPublisher(client, keys, ["GOOG"])
    publisher.publish(Tick("GOOG", i, 100.0 + i, 1.0) for i in range(25))
    reader = TickReader(client, keys, ["GOOG"], consumer="c1")
    reader.ensure_group()
    reader.ensure_group()  # idempotent
    first = reader.read(count=10, block_ms=10)["GOOG"]
    second = reader.read(count=10, block_ms=10)["GOOG"]
    reader.ack({"GOOG": [entry_id for entry_id, _ in first]})
    assert reader.read(count=10, block_ms=10)["GOOG"]  # the last five, also unacked
    pages = list(TickReader(client, keys, ["GOOG"], consumer="c1").pending(count=4))
    redelivered = [entry_id for page in pages for entry_id, _ in page["GOOG"]]
    assert redelivered[:10] == [entry_id for entry_id, _ in second]
    assert len(redelivered) == 15
    assert len(pages) == 4  # 4 + 4 + 4 + 3


def test_read_acknowledges_what_it_is_given_in_the_same_round_trip(client, keys):
    publisher = TickPublisher(client, keys, ["GOOG"])
    publisher.publish(Tick("GOOG", i, 100.0 + i, 1.0) for i in range(6))
    reader = TickReader(client, keys, ["GOOG"], consumer="c1")
    reader.ensure_group()
    first = reader.read(count=3, block_ms=10)["GOOG"]
    second = reader.read(count=3, block_ms=10, acks={"GOOG": [entry_id for entry_id, _ in first]})["GOOG"]
    assert [e for e, _ in second] != [e for e, _ in first]
    assert client.xpending(keys.stream("GOOG"), "desks")["pending"] == 3
    pages = list(TickReader(client, keys, ["GOOG"], consumer="c1").pending(count=10))
    assert [entry_id for entry_id, _ in pages[0]["GOOG"]] == [entry_id for entry_id, _ in second]
    assert reader.read(count=3, block_ms=10, acks={"GOOG": [e for e, _ in second]}) == {}
    assert client.xpending(keys.stream("GOOG"), "desks")["pending"] == 0
