"""Hot-path stats: latency samples are forgotten once taken, so a long-running shard does not grow."""

from __future__ import annotations

import numpy as np

from actors.stats import HotPathStats


def test_taken_latencies_are_returned_once_and_counters_keep_counting() -> None:
    stats = HotPathStats()
    stats.record_batch(2, 2, 3, 0, 0, np.array([10, 20], dtype=np.int64))
    stats.record_batch(1, 1, 1, 0, 0, np.array([30], dtype=np.int64))
    assert stats.take_latencies_ns().tolist() == [10, 20, 30]
    assert stats.take_latencies_ns().tolist() == []
    stats.record_batch(1, 1, 1, 0, 0, np.array([40], dtype=np.int64))
    assert stats.take_latencies_ns().tolist() == [40]
    assert stats.snapshot().ticks == 4 and stats.snapshot().batches == 3
