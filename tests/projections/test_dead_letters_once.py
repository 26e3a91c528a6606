"""A dead letter is in dlq.<group> exactly once: after a crash between its send and its mark, and under SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections import Counter

import orjson
import psycopg
from psycopg import sql

from backbone.topics import dead_letter_topic
from projections.read_models import ArchiveProjection
from projections.worker import ProjectionWorker, WorkerSettings
from tests.process_report import LoggedProcess
from tests.projections.poison_support import (
    WorkerThread,
    archive_envelope,
    consumed,
    dead_letters,
    produce,
    wait_for,
)
from tests.projections.test_workers import _read_all, count, migrated  # noqa: F401 - fixture

POISON = [b"{not json", b"\xff\xfe", orjson.dumps({**archive_envelope(0), "event_id": "not-a-uuid"}),
          orjson.dumps({**archive_envelope(0), "originator_version": 2**40}),
          orjson.dumps({**archive_envelope(0), "symbol": "A\x00"})]


def _inputs(n: int) -> tuple[list[bytes], int]:
    values = []
    for i in range(n):
        values.append(orjson.dumps(archive_envelope(i + 1)))
        if i % 10 == 5:
            values.append(POISON[(i // 10) % len(POISON)])
    return values, sum(1 for v in values if v in POISON)


def _sources(servers, topics, at_least: int) -> Counter:
    letters = _read_all(servers, topics.name(dead_letter_topic("archive")), at_least)
    return Counter(dict(h)["source"].decode() for _, h in letters)


def test_a_crash_between_sending_and_marking_a_dead_letter_does_not_send_it_again(
    kafka_servers, topic_settings, database_url, migrated  # noqa: F811
):
    schema, group = migrated, topic_settings.name("archive")
    values, poison = _inputs(30)
    topic = topic_settings.name("trading_decisions")
    placed = produce(kafka_servers, topic_settings, ["archive"], topic, values)

    def run_until_published() -> None:
        thread = WorkerThread(ProjectionWorker(ArchiveProjection(), kafka_servers, database_url, schema,
                                               topic_settings, WorkerSettings(backoff_base=0.01)))
        try:
            wait_for(lambda: consumed(database_url, schema, group, topic, placed)
                     and all(p for *_, p in dead_letters(database_url, schema, group)), 240, "the batch", thread)
        finally:
            thread.stop()

    run_until_published()
    assert len(dead_letters(database_url, schema, group)) == poison
    # What a SIGKILL right after the broker acknowledged the sends leaves behind: rows not marked.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("UPDATE {}.dead_letters SET published_at = NULL, dlq_partition = NULL, dlq_offset = NULL"
                             " WHERE consumer_group = %s").format(sql.Identifier(schema)), (group,))
    run_until_published()  # a new worker (a restart) finds them in the topic's tail and only marks them
    sources = _sources(kafka_servers, topic_settings, poison)
    assert len(sources) == poison and set(sources.values()) == {1}, sources
    assert count(database_url, schema, "SELECT count(*) FROM {s}.event_archive") == 30


def test_sigkill_of_a_worker_at_any_moment_leaves_each_dead_letter_once_and_each_event_once(
    kafka_servers, topic_settings, database_url, migrated, tmp_path  # noqa: F811
):
    schema, group = migrated, topic_settings.name("archive")
    values, poison = _inputs(300)
    topic = topic_settings.name("trading_decisions")
    placed = produce(kafka_servers, topic_settings, ["archive"], topic, values)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_servers, "DATABASE_URL": database_url,
           "GLASSBOX_HOME": str(tmp_path), "KAFKA_PARTITIONS": str(topic_settings.partitions)}
    command = [sys.executable, "-m", "projections.worker_main", "--projection", "archive", "--schema", schema,
               "--topic-prefix", topic_settings.prefix, "--max-records", "3"]
    rng = random.Random(12)
    for attempt in range(5):  # killed at a drawn moment, five times over
        process = LoggedProcess(command, tmp_path / f"run{attempt}.out", env=env)
        time.sleep(rng.uniform(1.0, 6.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
    final = LoggedProcess(command, tmp_path / "final.out", env=env)
    try:
        wait_for(lambda: consumed(database_url, schema, group, topic, placed)
                 and all(p for *_, p in dead_letters(database_url, schema, group)), 300, "the last worker")
    finally:
        final.stop(120)
    assert final.returncode == 0, final.report()
    assert count(database_url, schema, "SELECT count(*) FROM {s}.event_archive") == 300
    assert len(dead_letters(database_url, schema, group)) == poison
    sources = _sources(kafka_servers, topic_settings, poison)
    assert len(sources) == poison and set(sources.values()) == {1}, sources
