"""SIGKILL of the relay process mid-stream: on restart no event is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import redis

from backbone.relay import RelayPosition
from tests.backbone.relay_support import consume_all, log_size


def start_relay(redis_url: str, servers: str, store_name: str, prefix: str, home, prefix_partitions: int = 4) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": servers, "GLASSBOX_HOME": str(home),
           "KAFKA_PARTITIONS": str(prefix_partitions)}
    return subprocess.Popen(
        [sys.executable, "-m", "backbone.relay_main", "--store", store_name, "--topic-prefix", prefix,
         "--batch-size", "3"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def test_sigkill_mid_stream_then_restart_loses_nothing(redis_url, store, kafka_servers, topic_settings, tmp_path):
    head = log_size(redis_url, store)
    position = RelayPosition(redis.Redis.from_url(redis_url), store, "relay")
    first = start_relay(redis_url, kafka_servers, store, topic_settings.prefix, tmp_path)
    deadline = time.monotonic() + 60
    while position.get() < 30:
        assert first.poll() is None, first.stderr.read().decode()
        assert time.monotonic() < deadline, "the relay made no progress"
        time.sleep(0.002)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = position.get()
    assert 0 < killed_at < head, "the relay finished before it could be killed mid-stream"

    second = start_relay(redis_url, kafka_servers, store, topic_settings.prefix, tmp_path)
    try:
        while position.get() < head:
            assert second.poll() is None, second.stderr.read().decode()
            assert time.monotonic() < deadline, f"restarted relay stuck at {position.get()} of {head}"
            time.sleep(0.02)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0

    envelopes = consume_all(kafka_servers, topic_settings, head)
    positions = Counter(e["log_position"] for e in envelopes)
    assert set(positions) == set(range(1, head + 1))  # nothing missing
    resent = sum(n - 1 for n in positions.values())
    assert resent <= 3  # at most the one batch that was in flight, and consumers drop it by event id
