"""Helpers shared by tests that run the hot path: build one, feed it, wait for it."""

from __future__ import annotations

import time

from actors.desk_actor import ActorSettings
from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from edge.tick_stream import TickPublisher
from edge.ticks import Tick

SYMBOLS = ["AAA", "BBB", "CCC"]
STORE_SYMBOLS = ["AAA", "BBB"]
"""The symbols of the `store` fixture's event store."""


def make_hot_path(redis_url, namespace, policy, symbols=SYMBOLS, checkpoint_every=1000):
    settings = HotPathSettings(
        redis_url,
        namespace=namespace,
        shard=ShardSettings(actor=ActorSettings(checkpoint_every=checkpoint_every)),
    )
    return HotPath(settings, symbols, policy)


def publish(hot: HotPath, ticks) -> list[Tick]:
    ticks = list(ticks)
    report = TickPublisher(hot.client, hot.keys, hot.symbols).publish(ticks)
    assert report.accepted == len(ticks)
    return ticks


def wait_until_decided(hot: HotPath, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while hot.stats.snapshot().ticks < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {hot.stats.snapshot()} of {count} ticks handled")
        time.sleep(0.02)
    assert hot.shard.idle(10)
