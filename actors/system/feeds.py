"""The feeds of ``glassbox up``: the bundled bars, the synthetic symbols and a user's file, paced into the tick streams."""

from __future__ import annotations

import sys
import threading
import time

import redis

from actors.system.plan import RunPlan
from edge.feeds import SyntheticFeed, bundled_ticks
from edge.pacing import PacedFeed
from edge.tick_stream import TickKeys, TickPublisher
from edge.ticks import TickBounds

__all__ = ["start_feeds"]


def start_feeds(client: redis.Redis, keys: TickKeys, plan: RunPlan, stop: threading.Event,
                bounds: TickBounds = TickBounds()) -> list[threading.Thread]:
    """One thread per source of ``plan``, sharing its rate, publishing until ``stop`` is set.

    Replayed sources (the bundled bars, a user's file) resume where the last run
    stopped: their offsets live in Redis beside the streams.
    """
    publisher = TickPublisher(client, keys, plan.symbols, bounds)
    sources = bool(plan.bundled) + bool(plan.synthetic) + bool(plan.user_data)
    share = plan.rate / sources
    feeds: list[PacedFeed] = []
    if plan.bundled:
        feeds.append(PacedFeed(publisher, bundled_ticks(plan.bundled), share, client, keys.feed_offset("bundled")))
    if plan.synthetic:
        interval = int(1e9 * len(plan.synthetic) / share)
        feed = SyntheticFeed(plan.synthetic, seed=plan.seed, start_ns=time.time_ns(), tick_interval_ns=interval)
        feeds.append(PacedFeed(publisher, feed.ticks(sys.maxsize), share))
    if plan.user_data is not None:
        offset_key = keys.feed_offset(f"file:{plan.user_data.path.name}")
        feeds.append(PacedFeed(publisher, iter(plan.user_data.ticks), share, client, offset_key))
    threads = [threading.Thread(target=f.run, args=(stop,), name="feed", daemon=True) for f in feeds]
    for thread in threads:
        thread.start()
    return threads
