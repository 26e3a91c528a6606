"""Rebuilding the read models from the event log gives the tables built live (real Redis, broker, PostgreSQL)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from backbone.relay import Relay
from projections.forensics import ExplainerCache
from projections.forensics_projection import ForensicsProjection
from projections.migrate import apply_migrations
from projections.read_models import DecisionsProjection
from actors.system.rebuild import rebuild_read_models
from projections.checksums import table_checksums
from tests.backbone.relay_support import feature_names, relay_until_caught_up
from tests.projections.test_workers import count, run_workers, workers_for


def test_rebuilt_tables_equal_the_live_ones_and_a_damaged_row_is_repaired(
    redis_url, store, kafka_servers, topic_settings, database_url, schema, model_registry
):
    apply_migrations(database_url, schema)
    relay_until_caught_up(Relay(redis_url, store, kafka_servers, topic_settings, feature_names))
    projections = [DecisionsProjection(), ForensicsProjection(ExplainerCache(model_registry))]
    run_workers(workers_for(projections, kafka_servers, database_url, schema, topic_settings),
                lambda: count(database_url, schema, "SELECT count(*) FROM {s}.forensics") == 300
                and count(database_url, schema, "SELECT count(*) FROM {s}.decisions") == 300)
    live = table_checksums(database_url, schema)
    assert live["decisions"][0] == live["forensics"][0] == 300 and live["positions"][0] > 0

    with psycopg.connect(database_url) as conn:  # damage the live tables
        conn.execute(sql.SQL("UPDATE {}.decisions SET quantity = quantity + 1 WHERE decision_id ="
                             " (SELECT min(decision_id::text)::uuid FROM {}.decisions)").format(
            sql.Identifier(schema), sql.Identifier(schema)))
        conn.execute(sql.SQL("DELETE FROM {}.forensics WHERE decision_id ="
                             " (SELECT min(decision_id::text)::uuid FROM {}.forensics)").format(
            sql.Identifier(schema), sql.Identifier(schema)))
    lines: list[str] = []
    report = rebuild_read_models(redis_url, kafka_servers, database_url, schema, [store], model_registry,
                                 topic_settings, lines.append)
    assert not report.identical  # the checksums saw the damage ...
    assert report.after == live  # ... and the rebuild from events restored every row
    assert report.events > 300 and lines

    again = rebuild_read_models(redis_url, kafka_servers, database_url, schema, [store], model_registry, topic_settings)
    assert again.identical and again.after == live
    assert count(database_url, schema, "SELECT count(*) FROM {s}.projection_tracking WHERE topic LIKE '%rebuild-%'") == 0
