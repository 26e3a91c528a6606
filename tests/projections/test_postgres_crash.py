"""PostgreSQL SIGKILLed under the read-models worker, whose commits do not wait for the disk: nothing lost or twice.

The worker commits with ``synchronous_commit=off`` (WorkerSettings.synchronous_commit): a crash may lose
its last acknowledged commits, but rows and offsets go together, so it reads those records again. The
positions' cash is a running sum, not keyed by id: a fill applied twice or skipped would show in it.
"""

from __future__ import annotations

import os
import signal

import orjson

from backbone.envelope import read_envelope, unpack
from backbone.relay import Relay, RelaySettings
from projections.migrate import apply_migrations
from projections.postgres_server import EmbeddedPostgres
from projections.read_models import DECISION, FILLS, DecisionsProjection
from projections.worker import ProjectionWorker, WorkerSettings
from tests.backbone.relay_support import feature_names, relay_until_caught_up
from tests.projections.poison_support import WorkerThread, wait_for
from tests.projections.test_workers import _read_all, count

import psycopg
from psycopg import sql


def test_a_postgresql_killed_mid_stream_loses_no_decision_and_applies_no_fill_twice(
    redis_url, store, kafka_servers, topic_settings, pg_dir
):
    assert not WorkerSettings().synchronous_commit  # what this test is about
    relay_until_caught_up(Relay(redis_url, store, kafka_servers, topic_settings, feature_names,
                                RelaySettings(pack_max_events=1)))
    topic = topic_settings.name("trading_decisions")
    envelopes = [read_envelope(e) for value, _ in _read_all(kafka_servers, topic, 1) for e in unpack(orjson.loads(value))]
    decisions = {e["trading_decision"]["decision_id"] for e in envelopes if e["event_type"] == DECISION}
    fills = sorted((e for e in envelopes if e["event_type"] in FILLS), key=lambda e: e["log_position"])
    expected: dict[str, tuple[float, float]] = {}
    for e in fills:  # the projection's own arithmetic, in log order
        f = e["payload"]
        signed = f["quantity"] if f["side"] == "BUY" else -f["quantity"]
        _, cash = expected.get(f["symbol"], (0.0, 0.0))
        expected[f["symbol"]] = (f["position_after"], cash + (-signed * f["price"] - f.get("commission", 0.0)))
    assert len(decisions) == 300 and fills

    schema = "crash"
    server = EmbeddedPostgres(pg_dir / "pg")
    server.start()
    url, port = server.url, server.port
    decided = lambda: count(url, schema, "SELECT count(*) FROM {s}.decisions")  # noqa: E731
    try:
        apply_migrations(url, schema)
        thread = WorkerThread(ProjectionWorker(DecisionsProjection(), kafka_servers, url, schema, topic_settings,
                                               WorkerSettings(max_records=3, reconnect_base=0.2, reconnect_cap=1.0)))
        try:
            wait_for(lambda: decided() >= 60, 240, "the first decisions", thread)
            os.kill(server.pid, signal.SIGKILL)  # mid-stream: commits acknowledged, WAL perhaps not on disk
            server.stop()
            server = EmbeddedPostgres(pg_dir / "pg", port=port)
            server.start()
            wait_for(lambda: decided() >= 300 and thread.worker.metrics.processed_total > 0, 300,
                     "the worker to resume and write every decision", thread)
            wait_for(lambda: count(url, schema, "SELECT count(*) FROM {s}.decisions WHERE fill IS NOT NULL")
                     >= len(fills), 120, "every fill", thread)
            assert thread.alive()
        finally:
            thread.stop()
        assert not thread.errors, thread.errors
        with psycopg.connect(url) as conn:
            s = sql.Identifier(schema)
            ids = [r[0] for r in conn.execute(sql.SQL("SELECT decision_id::text FROM {}.decisions").format(s))]
            positions = {symbol: (quantity, cash) for symbol, quantity, cash in conn.execute(
                sql.SQL("SELECT symbol, quantity, cash FROM {}.positions").format(s))}
            letters = conn.execute(sql.SQL("SELECT count(*) FROM {}.dead_letters").format(s)).fetchone()[0]
        assert sorted(ids) == sorted(decisions)  # each once
        assert {k: positions[k] for k in expected} == expected  # to the bit: every fill applied once, in order
        assert letters == 0
    finally:
        server.stop()
