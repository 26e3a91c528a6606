"""The feeds of ``glassbox up`` outlive Redis refusing their writes, and publish every tick exactly once.

A real Redis made to refuse as it does in production: ``READONLY`` (it became a replica, as a former
primary does after a failover) and ``OOM`` (``maxmemory`` reached with ``noeviction``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from actors.system.feeds import FeedThread
from edge.child_process import free_port
from edge.pacing import PacedFeed
from edge.redis_server import EmbeddedRedis
from edge.tick_stream import TickKeys, TickPublisher
from edge.ticks import Tick, decode_tick

_TICKS = 2000
_SYMBOLS = ("AAA", "BBB")


def _readonly(client: redis.Redis) -> Callable[[], None]:
    client.replicaof("127.0.0.1", free_port())  # a primary nobody runs: it keeps its data and refuses writes
    return lambda: client.replicaof("NO", "ONE")


def _out_of_memory(client: redis.Redis) -> Callable[[], None]:
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    return lambda: client.config_set("maxmemory", "0")


@pytest.mark.parametrize("refuse", [_readonly, _out_of_memory], ids=["READONLY", "OOM"])
def test_a_feed_waits_out_a_refusing_redis_says_so_once_and_publishes_each_tick_once(
        tmp_path: Path, refuse: Callable[[redis.Redis], Callable[[], None]]) -> None:
    keys = TickKeys("feedtest:")
    ticks = [Tick(_SYMBOLS[i % 2], 1_700_000_000_000_000_000 + i * 1_000_000, 100.0 + i / 100, 1.0 + i)
             for i in range(_TICKS)]
    offset_key = keys.feed_offset("bundled")
    said: list[str] = []
    stop = threading.Event()
    with EmbeddedRedis(tmp_path / "redis") as server, redis.Redis.from_url(server.url) as admin:
        feed_client = redis.Redis.from_url(server.url, socket_timeout=5.0)

        def make(client: redis.Redis) -> PacedFeed:
            return PacedFeed(TickPublisher(client, keys, _SYMBOLS), iter(ticks), 500.0, client, offset_key)

        thread = FeedThread(feed_client, make, stop, say=said.append, refused_retry=0.2)
        thread.start()
        try:
            deadline = time.monotonic() + 120
            while int(admin.get(offset_key) or 0) == 0:
                assert time.monotonic() < deadline and thread.is_alive(), "the feed never published"
                time.sleep(0.01)
            lift = refuse(admin)
            while thread.refusals < 3:
                assert time.monotonic() < deadline, "the feed never met the refusal"
                assert thread.is_alive(), "the refusal killed the feed thread"
                time.sleep(0.05)
            lift()
            thread.join(120)
            assert not thread.is_alive(), "the feed did not finish once Redis accepted the writes again"
            assert len(said) == 1, said  # said once for the whole refusal
            assert said[0].startswith("feed: Redis refuses the ticks (") and "from the stored offset" in said[0]
            assert int(admin.get(offset_key)) == _TICKS
            published = [decode_tick(symbol, fields)
                         for symbol in _SYMBOLS for _, fields in admin.xrange(keys.stream(symbol))]
            assert sorted(published, key=lambda t: t.ts_ns) == ticks  # every tick, none twice
            assert admin.xlen(keys.dead_letters) == 0
        finally:
            stop.set()
            thread.join(10)
            feed_client.close()
