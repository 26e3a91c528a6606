"""A shard process's counters, latency and risk, published to Redis for the supervisor, ``glassbox status`` and ``/metrics``.

Besides counters and the latency percentiles of the last second, the hash
beside the shard's store (``StoreKeys.shard_metrics``) holds, as JSON:

- ``latency_histogram``: tick → committed latency since the shard started,
  as cumulative counts per bucket (``LATENCY_BUCKETS_S``), their sum and count:
  ``/metrics`` exports it as the Prometheus histogram
  ``glassbox_tick_latency_seconds`` per shard;
- ``limit_utilisation``: the largest position, the book's leverage and its
  day's loss as fractions of their limits (1 is at the limit);
- ``alerts``: price alerts committed, per severity.
"""

from __future__ import annotations

import time

import numpy as np
import orjson
import redis

from actors.book import PortfolioBook
from actors.stats import HotPathStats, percentiles_us
from aggregates.risk import RiskLimits
from edge.store_layout import StoreKeys

__all__ = ["LATENCY_BUCKETS_S", "ShardMetricsPublisher", "shard_metrics_key"]

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds of the latency histogram's buckets (seconds); +Inf is implied."""


def shard_metrics_key(store_name: str) -> str:
    """The hash beside the shard's event store where its metrics are published."""
    return StoreKeys(store_name).shard_metrics


class ShardMetricsPublisher:
    """Publishes a shard's stats once per :meth:`publish` call (the shard's main loop calls it each second)."""

    def __init__(self, client: redis.Redis, store_name: str, stats: HotPathStats, symbols: int,
                 book: PortfolioBook | None = None, limits: RiskLimits | None = None) -> None:
        self.key = shard_metrics_key(store_name)
        self._client = client
        self._stats = stats
        self._symbols = symbols
        self._book = book
        self._limits = limits or RiskLimits()
        self._buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)  # the last is +Inf
        self._latency_sum_s = 0.0

    def publish(self) -> None:
        """Write counters, this process's pid and the latency since the previous call."""
        snap = self._stats.snapshot()
        recent = self._stats.take_latencies_ns()  # and forget them: a shard runs for days
        p50, p99 = percentiles_us(recent, (50, 99)) if len(recent) else (0.0, 0.0)
        ages = self._stats.view_ages_ms(take=True)
        self._count(recent)
        mapping: dict[str, object] = {
            "ticks": snap.ticks, "decisions": snap.decisions, "events": snap.events,
            "dead_letters": snap.dead_letters, "duplicates_skipped": snap.duplicates_skipped,
            "symbols": self._symbols, "latency_us_p50": round(p50, 1), "latency_us_p99": round(p99, 1),
            "book_view_age_ms_p99": float(np.percentile(ages, 99)) if len(ages) else 0.0,
            "book_view_age_ms_max": int(ages.max()) if len(ages) else 0,
            "latency_histogram": orjson.dumps({"le": list(LATENCY_BUCKETS_S), "cumulative": self._cumulative(),
                                               "sum": self._latency_sum_s}),
            "alerts": orjson.dumps(self._stats.alerts_by_severity()),
            "updated_at": time.time(),
        }
        if self._book is not None:
            # orjson writes a non-finite number as null: a book without equity left is "unknown", never 0.
            mapping["limit_utilisation"] = orjson.dumps(self._book.utilisation(self._limits))
        self._client.hset(self.key, mapping=mapping)

    def _count(self, latencies_ns: np.ndarray) -> None:
        if not len(latencies_ns):
            return
        seconds = latencies_ns / 1e9
        counts = np.bincount(np.searchsorted(LATENCY_BUCKETS_S, seconds, side="left"),
                             minlength=len(self._buckets))
        for i, n in enumerate(counts.tolist()):
            self._buckets[i] += n
        self._latency_sum_s += float(seconds.sum())

    def _cumulative(self) -> list[int]:
        total, out = 0, []
        for n in self._buckets:
            total += n
            out.append(total)
        return out


