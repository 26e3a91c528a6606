"""SIGKILL of the relay process mid-stream: on restart no event is missing."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

import redis

from backbone.relay import RelayPosition
from tests.backbone.relay_support import consume_all, log_size
from tests.process_report import LoggedProcess, wait_until


def start_relay(redis_url: str, servers: str, store_name: str, prefix: str, home, output,
                prefix_partitions: int = 4) -> LoggedProcess:
    env = {**os.environ, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": servers, "GLASSBOX_HOME": str(home),
           "KAFKA_PARTITIONS": str(prefix_partitions)}
    return LoggedProcess(
        [sys.executable, "-m", "backbone.relay_main", "--store", store_name, "--topic-prefix", prefix,
         "--batch-size", "3"],
        output, env=env,
    )


def test_sigkill_mid_stream_then_restart_loses_nothing(redis_url, store, kafka_servers, topic_settings, tmp_path):
    head = log_size(redis_url, store)
    position = RelayPosition(redis.Redis.from_url(redis_url), store, "relay")
    first = start_relay(redis_url, kafka_servers, store, topic_settings.prefix, tmp_path, tmp_path / "first.out")
    try:
        wait_until(lambda: position.get() >= 30, 300, "the relay's first 30 events", first, every=0.002)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = position.get()
    assert 0 < killed_at < head, f"the relay finished before it could be killed mid-stream\n{first.report()}"

    second = start_relay(redis_url, kafka_servers, store, topic_settings.prefix, tmp_path, tmp_path / "second.out")
    try:
        wait_until(lambda: position.get() >= head, 300, f"the restarted relay to reach {head}", second, every=0.02)
    finally:
        second.stop(120)  # SIGTERM; SIGKILL (a failure below) if it has not stopped 120 s later
    assert second.returncode == 0, second.report()

    envelopes = consume_all(kafka_servers, topic_settings, head)
    positions = Counter(e["log_position"] for e in envelopes)
    assert set(positions) == set(range(1, head + 1))  # nothing missing
    resent = sum(n - 1 for n in positions.values())
    assert resent <= 3  # at most the one batch that was in flight, and consumers drop it by event id
