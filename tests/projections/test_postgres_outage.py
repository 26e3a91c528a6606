"""PostgreSQL killed under a running worker, then restarted: the worker waits, says so once, resumes; every row once."""

from __future__ import annotations

import logging
import os
import signal

import orjson
import pytest

from projections.migrate import apply_migrations
from projections.postgres_server import EmbeddedPostgres
from projections.read_models import ArchiveProjection
from projections.worker import ProjectionWorker, WorkerSettings
from tests.projections.poison_support import WorkerThread, archive_envelope, consumed, dead_letters, produce, wait_for
from tests.projections.test_workers import count


def test_a_worker_waits_out_a_killed_postgresql_and_projects_every_record_once(
    kafka_servers, topic_settings, pg_dir, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="projections.worker")
    schema, group, topic = "outage", topic_settings.name("archive"), topic_settings.name("trading_decisions")
    first, second = ([orjson.dumps(archive_envelope(i)) for i in range(a, b)] for a, b in ((1, 101), (101, 201)))
    second.insert(50, orjson.dumps({**archive_envelope(0), "event_id": "not-a-uuid"}))
    server = EmbeddedPostgres(pg_dir / "pg")
    server.start()
    url, port = server.url, server.port
    try:
        apply_migrations(url, schema)
        thread = WorkerThread(ProjectionWorker(ArchiveProjection(), kafka_servers, url, schema, topic_settings,
                                               WorkerSettings(max_records=20, reconnect_base=0.2, reconnect_cap=1.0)))
        try:
            placed = produce(kafka_servers, topic_settings, ["archive"], topic, first)
            wait_for(lambda: count(url, schema, "SELECT count(*) FROM {s}.event_archive") >= 40, 240,
                     "the first rows", thread)
            os.kill(server.pid, signal.SIGKILL)  # mid-stream, no shutdown
            server.stop()
            placed += produce(kafka_servers, topic_settings, ["archive"], topic, second)
            wait_for(lambda: "PostgreSQL unreachable at" in caplog.text, 120, "the outage line", thread)
            server = EmbeddedPostgres(pg_dir / "pg", port=port)
            server.start()
            wait_for(lambda: consumed(url, schema, group, topic, placed), 240, "the worker to resume", thread)
            assert thread.alive()
        finally:
            thread.stop()
        assert not thread.errors, thread.errors
        assert count(url, schema, "SELECT count(*) FROM {s}.event_archive") == 200
        assert count(url, schema, "SELECT count(DISTINCT event_id) FROM {s}.event_archive") == 200
        assert [reason for *_, reason, _ in dead_letters(url, schema, group)] == ["invalid_record"]
    finally:
        server.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("PostgreSQL unreachable at" in line for line in lines) == 1, lines
    assert sum("PostgreSQL is back at" in line for line in lines) == 1, lines
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    assert "***" not in url and url.split("@")[-1] in caplog.text  # the line names where it connects
