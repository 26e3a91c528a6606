"""The feeds of ``glassbox up``: the bundled bars, the synthetic symbols and a user's file, paced into the tick streams.

A feed outlives a Redis outage: its thread catches the connection error,
waits until Redis answers again and goes on from where the store says. A
replayed source (bundled bars, a user's file) records its offset in the same
transaction as each chunk (:class:`edge.pacing.PacedFeed`), so resuming
re-reads that offset and skips exactly what was published: a chunk whose
transaction never committed is sent again, one that committed is not, even
when the reply was lost with the connection. The client that publishes
therefore never retries by itself (a retried ``EXEC`` could publish a chunk
twice). The supervisor says that Redis is down; the feed threads say nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from actors.system.plan import RunPlan
from edge.feeds import SyntheticFeed, bundled_ticks
from edge.pacing import PacedFeed
from edge.tick_stream import TickKeys, TickPublisher
from edge.ticks import Tick, TickBounds

__all__ = ["FeedThread", "start_feeds"]

_RECONNECT_EVERY = 0.5
"""Seconds between attempts to reach Redis again while it is down."""


class FeedThread(threading.Thread):
    """One source paced into the streams until ``stop``, across Redis outages.

    ``make_feed(client)`` builds the feed afresh (a new publisher, the offset
    read from the store); it is called at the start and after every outage.
    """

    def __init__(self, client: redis.Redis, make_feed: Callable[[redis.Redis], PacedFeed],
                 stop: threading.Event) -> None:
        super().__init__(name="feed", daemon=True)
        self._client = client
        self._make_feed = make_feed
        self._stop_feeding = stop
        self.outages = 0

    def run(self) -> None:
        while not self._stop_feeding.is_set():
            try:
                feed = self._make_feed(self._client)
                feed.run(self._stop_feeding)
                if feed.exhausted:
                    return
            except (redis.ConnectionError, redis.TimeoutError):  # Redis went away, or its reply did: resume from the store
                self.outages += 1
                self._wait_for_redis()
            finally:
                self._client.connection_pool.disconnect()  # no connection of the old server is reused

    def _wait_for_redis(self) -> None:
        while not self._stop_feeding.wait(_RECONNECT_EVERY):
            try:
                if self._client.ping():
                    return
            except redis.RedisError:
                continue


def start_feeds(redis_url: str, keys: TickKeys, plan: RunPlan, stop: threading.Event,
                bounds: TickBounds = TickBounds()) -> list[FeedThread]:
    """One thread per source of ``plan``, sharing its rate, publishing until ``stop`` is set.

    Replayed sources (the bundled bars, a user's file) resume where the last run
    (or the last Redis outage) stopped: their offsets live in Redis beside the streams.
    """
    sources = bool(plan.bundled) + bool(plan.synthetic) + bool(plan.user_data)
    share = plan.rate / sources
    makers: list[Callable[[redis.Redis], PacedFeed]] = []

    def replayed(ticks: Callable[[], Iterator[Tick]], offset_key: str) -> Callable[[redis.Redis], PacedFeed]:
        return lambda client: PacedFeed(TickPublisher(client, keys, plan.symbols, bounds), ticks(), share, client, offset_key)

    if plan.bundled:
        bundled = plan.bundled
        makers.append(replayed(lambda: bundled_ticks(bundled), keys.feed_offset("bundled")))
    if plan.synthetic:
        interval = int(1e9 * len(plan.synthetic) / share)
        synthetic = SyntheticFeed(plan.synthetic, seed=plan.seed, start_ns=time.time_ns(),
                                  tick_interval_ns=interval).ticks(sys.maxsize)
        # Not replayed: after an outage it goes on with new ticks (a lost chunk was never published).
        makers.append(lambda client: PacedFeed(TickPublisher(client, keys, plan.symbols, bounds), synthetic, share))
    if plan.user_data is not None:
        user_ticks = plan.user_data.ticks
        makers.append(replayed(lambda: iter(user_ticks), keys.feed_offset(f"file:{plan.user_data.path.name}")))
    threads = [FeedThread(redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0)), make, stop)
               for make in makers]
    for thread in threads:
        thread.start()
    return threads
