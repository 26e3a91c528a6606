"""A shard process's counters and latency, published to Redis for the supervisor and ``glassbox status``."""

from __future__ import annotations

import time

import numpy as np

import redis

from actors.stats import HotPathStats, percentiles_us
from edge.store_layout import StoreKeys

__all__ = ["ShardMetricsPublisher", "shard_metrics_key"]


def shard_metrics_key(store_name: str) -> str:
    """The hash beside the shard's event store where its metrics are published."""
    return StoreKeys(store_name).beside("shard-metrics")


class ShardMetricsPublisher:
    """Publishes a shard's stats once per :meth:`publish` call (the shard's main loop calls it each second)."""

    def __init__(self, client: redis.Redis, store_name: str, stats: HotPathStats, symbols: int) -> None:
        self.key = shard_metrics_key(store_name)
        self._client = client
        self._stats = stats
        self._symbols = symbols

    def publish(self) -> None:
        """Write counters, this process's pid and the latency since the previous call."""
        snap = self._stats.snapshot()
        recent = self._stats.take_latencies_ns()  # and forget them: a shard runs for days
        p50, p99 = percentiles_us(recent, (50, 99)) if len(recent) else (0.0, 0.0)
        ages = self._stats.view_ages_ms(take=True)
        self._client.hset(self.key, mapping={
            "ticks": snap.ticks, "decisions": snap.decisions, "events": snap.events,
            "dead_letters": snap.dead_letters, "duplicates_skipped": snap.duplicates_skipped,
            "symbols": self._symbols, "latency_us_p50": round(p50, 1), "latency_us_p99": round(p99, 1),
            "book_view_age_ms_p99": float(np.percentile(ages, 99)) if len(ages) else 0.0,
            "book_view_age_ms_max": int(ages.max()) if len(ages) else 0,
            "updated_at": time.time(),
        })
