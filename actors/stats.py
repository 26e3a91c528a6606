"""Counters and latency samples of the hot path, shared by a shard's threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["HotPathStats", "StatsSnapshot", "percentiles_us"]


@dataclass(frozen=True)
class StatsSnapshot:
    """Counters at one instant."""

    ticks: int
    decisions: int
    events: int
    dead_letters: int
    duplicates_skipped: int
    batches: int


class HotPathStats:
    """Thread-safe counters plus every tick→committed latency in ns.

    Latencies are kept whole (8 bytes a tick: 30 s at 5,000/s is 1.2 MB) so
    percentiles are exact rather than estimated, until someone takes them
    (:meth:`take_latencies_ns`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ticks = self._decisions = self._events = 0
        self._dead = self._duplicates = self._batches = 0
        self._latencies: list[np.ndarray] = []
        self._view_ages_ms: list[int] = []
        self._alert_latencies: list[np.ndarray] = []
        self._alerts: dict[str, int] = {}

    def record_alert_severities(self, severities: list[str]) -> None:
        with self._lock:
            for severity in severities:
                self._alerts[severity] = self._alerts.get(severity, 0) + 1

    def alerts_by_severity(self) -> dict[str, int]:
        """Price alerts committed so far, per severity."""
        with self._lock:
            return dict(self._alerts)

    def record_alerts(self, latencies_ns: np.ndarray) -> None:
        """Tick → committed latency of the ticks that raised a price alert (committed in the same append)."""
        if len(latencies_ns):
            with self._lock:
                self._alert_latencies.append(latencies_ns)

    def alert_latencies_ns(self) -> np.ndarray:
        with self._lock:
            parts = list(self._alert_latencies)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def record_view_age(self, age_ms: int) -> None:
        """How old the other shards' figures a committed cycle decided on were, at its commit (ms)."""
        with self._lock:
            self._view_ages_ms.append(age_ms)

    def view_ages_ms(self, take: bool = False) -> np.ndarray:
        """Every view age recorded (see :meth:`record_view_age`); ``take``: and forget them (as latencies)."""
        with self._lock:
            ages = self._view_ages_ms
            if take:
                self._view_ages_ms = []
        return np.asarray(ages, dtype=np.int64)

    def record_batch(
        self,
        ticks: int,
        decisions: int,
        events: int,
        dead_letters: int,
        duplicates: int,
        latencies_ns: np.ndarray,
    ) -> None:
        with self._lock:
            self._ticks += ticks
            self._decisions += decisions
            self._events += events
            self._dead += dead_letters
            self._duplicates += duplicates
            self._batches += 1
            if len(latencies_ns):
                self._latencies.append(latencies_ns)

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                self._ticks, self._decisions, self._events,
                self._dead, self._duplicates, self._batches,
            )

    def latencies_ns(self, since: int = 0, until: int | None = None) -> np.ndarray:
        """Latency samples of batches-with-samples number ``since`` up to ``until`` (the end)."""
        with self._lock:
            parts = self._latencies[since:until]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def take_latencies_ns(self) -> np.ndarray:
        """Every latency sample recorded so far, which are then forgotten.

        For a long-running shard that publishes its latency each second: kept
        whole, the samples would grow by 8 bytes a tick for as long as it runs.
        Benchmarks read them with :meth:`latencies_ns` instead and never take them.
        """
        with self._lock:
            parts, self._latencies = self._latencies, []
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def sample_batches(self) -> int:
        with self._lock:
            return len(self._latencies)


def percentiles_us(latencies_ns: np.ndarray, qs: tuple[float, ...] = (50, 99, 99.9)) -> list[float]:
    """Percentiles in µs (NaN when there are no samples)."""
    if not len(latencies_ns):
        return [float("nan")] * len(qs)
    return [float(v) / 1e3 for v in np.percentile(latencies_ns, qs)]
