"""The feeds of ``glassbox up``: the bundled bars, the synthetic symbols and a user's file, paced into the tick streams.

A feed outlives a Redis outage: its thread catches the connection error,
waits until Redis answers again and goes on from where the store says. It
outlives a refusal too (``READONLY`` from a former primary after a failover,
``OOM``, ``MISCONF``): said once in the log, tried again every few seconds,
resumed from the store in the same way. A
replayed source (bundled bars, a user's file) records its offset in the same
transaction as each chunk (:class:`edge.pacing.PacedFeed`), so resuming
re-reads that offset and skips exactly what was published: a chunk whose
transaction never committed is sent again, one that committed is not, even
when the reply was lost with the connection. The client that publishes
therefore never retries by itself (a retried ``EXEC`` could publish a chunk
twice), and its calls time out after :data:`FEED_TIMEOUT_S` (a paused Redis
is an outage, not a hang). A refused transaction is aborted whole by Redis
(``EXECABORT``): neither its ticks nor its offset were written, so resuming
sends them once. The supervisor says that Redis is down; the feed threads
say only what the supervisor cannot see (a refusal: Redis still answers PING).
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

__all__ = ["FEED_TIMEOUT_S", "REFUSED_RETRY_S", "FeedThread", "start_feeds"]

_RECONNECT_EVERY = 0.5
"""Seconds between attempts to reach Redis again while it is down."""
FEED_TIMEOUT_S = 5.0
"""Seconds a feed's Redis call may block before it counts as an outage."""
REFUSED_RETRY_S = 2.0
"""Seconds between attempts while Redis refuses the writes (READONLY, OOM, MISCONF)."""


class FeedThread(threading.Thread):
    """One source paced into the streams until ``stop``, across Redis outages.

    ``make_feed(client)`` builds the feed afresh (a new publisher, the offset
    read from the store); it is called at the start and after every outage
    or refusal. ``say(line)`` gets one line when Redis starts refusing.
    """

    def __init__(self, client: redis.Redis, make_feed: Callable[[redis.Redis], PacedFeed],
                 stop: threading.Event, say: Callable[[str], None] = lambda line: None,
                 refused_retry: float = REFUSED_RETRY_S) -> None:
        super().__init__(name="feed", daemon=True)
        self._client = client
        self._make_feed = make_feed
        self._stop_feeding = stop
        self._say = say
        self._refused_retry = refused_retry
        self._refusal_said = False
        self.outages = 0
        self.refusals = 0

    def run(self) -> None:
        while not self._stop_feeding.is_set():
            feed: PacedFeed | None = None
            try:
                feed = self._make_feed(self._client)
                feed.run(self._stop_feeding)
                if feed.exhausted:
                    return
            except (redis.ConnectionError, redis.TimeoutError):  # Redis went away, or its reply did: resume from the store
                self.outages += 1
                self._wait_for_redis()
            except redis.RedisError as error:  # refused (READONLY, OOM, MISCONF ...): nothing of the chunk was written
                self.refusals += 1
                if feed is not None and feed.sent:
                    self._refusal_said = False  # it had recovered: a new refusal is news again
                if not self._refusal_said:
                    self._refusal_said = True
                    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                    self._say(f"feed: Redis refuses the ticks ({first_line}); trying again every "
                              f"{self._refused_retry:g} s, from the stored offset")
                self._stop_feeding.wait(self._refused_retry)
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
                bounds: TickBounds = TickBounds(), say: Callable[[str], None] = lambda line: None) -> list[FeedThread]:
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
    threads = [FeedThread(redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0), socket_timeout=FEED_TIMEOUT_S,
                                               socket_connect_timeout=FEED_TIMEOUT_S), make, stop, say)
               for make in makers]
    for thread in threads:
        thread.start()
    return threads
