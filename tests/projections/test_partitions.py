"""Native storage mode: daily range partitions, a DEFAULT partition, an immutable archive."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from projections.migrate import MigrationSettings, apply_migrations
from projections.partitions import PartitionError, ensure_partitions

TIME_SERIES = ["decisions", "event_archive", "forensics"]


@pytest.fixture
def migrated(database_url: str, schema: str) -> str:
    """``schema`` migrated in native mode, with partitions for yesterday to 3 days ahead."""
    settings = MigrationSettings(storage_mode="native", partition_days_ahead=3)
    apply_migrations(database_url, schema, settings)
    return schema


def _partitions(conn: psycopg.Connection, schema: str, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT child.relname FROM pg_inherits"
        " JOIN pg_class AS child ON child.oid = inhrelid"
        " WHERE inhparent = format('%%I.%%I', %s::text, %s::text)::regclass",
        (schema, table),
    ).fetchall()
    return {name for (name,) in rows}


def _archive(conn: psycopg.Connection, schema: str, event_time: datetime) -> uuid.UUID:
    event_id = uuid.uuid4()
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.event_archive (log_position, event_id, store, originator_id,"
            " originator_version, event_type, symbol, event_time, schema_version,"
            " correlation_id, payload) VALUES (1, %s, 'test', %s, 1,"
            " 'Trading.Decision.Taken.v1', 'AAPL', %s, 1, 'tick-1', %s)"
        ).format(sql.Identifier(schema)),
        (event_id, uuid.uuid4(), event_time, json.dumps({"price": 101.5})),
    )
    return event_id


def _holder(conn: psycopg.Connection, schema: str, event_id: uuid.UUID) -> str:
    """The partition holding an archived event."""
    query = sql.SQL("SELECT tableoid::regclass::text FROM {}.event_archive WHERE event_id = %s")
    (name,) = conn.execute(query.format(sql.Identifier(schema)), (event_id,)).fetchone()
    return name.rsplit(".", 1)[-1]


def test_time_series_tables_have_daily_partitions_ahead_and_a_default(
    conn: psycopg.Connection, migrated: str
) -> None:
    today = datetime.now(UTC).date()
    days = [today + timedelta(days=offset) for offset in range(-1, 4)]
    for table in TIME_SERIES:
        kind = conn.execute(
            "SELECT relkind FROM pg_class"
            " WHERE oid = format('%%I.%%I', %s::text, %s::text)::regclass",
            (migrated, table),
        ).fetchone()
        assert kind == ("p",)  # a partitioned table
        expected = {f"{table}_default"} | {f"{table}_p{day:%Y%m%d}" for day in days}
        assert _partitions(conn, migrated, table) == expected
    # Today's rows go to today's partition, not the default.
    assert _holder(conn, migrated, _archive(conn, migrated, datetime.now(UTC))) == (
        f"event_archive_p{today:%Y%m%d}"
    )


def test_default_partition_keeps_out_of_range_rows_until_their_day_exists(
    conn: psycopg.Connection, migrated: str
) -> None:
    late_evening = _archive(conn, migrated, datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC))
    midnight = _archive(conn, migrated, datetime(2000, 1, 1, tzinfo=UTC))
    assert _holder(conn, migrated, late_evening) == "event_archive_default"

    created = ensure_partitions(conn, migrated, date(1999, 12, 31), 1)
    assert created == [f"{table}_p19991231" for table in TIME_SERIES]
    assert _holder(conn, migrated, late_evening) == "event_archive_p19991231"  # moved
    assert _holder(conn, migrated, midnight) == "event_archive_default"  # next day's
    count = sql.SQL("SELECT count(*) FROM {}.event_archive").format(sql.Identifier(migrated))
    assert conn.execute(count).fetchone() == (2,)
    assert ensure_partitions(conn, migrated, date(1999, 12, 31), 1) == []  # idempotent
    # The partition built from moved rows got the parent's keys and triggers too.
    with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
        conn.execute(
            sql.SQL("DELETE FROM {}").format(sql.Identifier(migrated, "event_archive_p19991231"))
        )
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                sql.Identifier(migrated, "event_archive"),
                sql.Identifier(migrated, "event_archive_p19991231"),
            )
        )


def test_event_archive_refuses_update_and_delete(
    conn: psycopg.Connection, migrated: str
) -> None:
    event_id = _archive(conn, migrated, datetime.now(UTC))
    holder = _holder(conn, migrated, event_id)
    archive = sql.Identifier(migrated, "event_archive")
    attempts = [
        sql.SQL("UPDATE {} SET symbol = 'MSFT' WHERE event_id = %s").format(archive),
        sql.SQL("DELETE FROM {} WHERE event_id = %s").format(archive),
        sql.SQL("DELETE FROM {} WHERE event_id = %s").format(sql.Identifier(migrated, holder)),
    ]
    for attempt in attempts:
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            conn.execute(attempt, (event_id,))
    assert _holder(conn, migrated, event_id) == holder  # still there


def test_decisions_are_indexed_by_id_and_unique(conn: psycopg.Connection, migrated: str) -> None:
    decision_id = uuid.uuid4()
    decided_at = datetime.now(UTC)
    insert = sql.SQL(
        "INSERT INTO {}.decisions (decision_id, symbol, decided_at, action, quantity,"
        " confidence, price, regime_probs, strategy_weights, features, model_version,"
        " risk_passed, risk_checks, log_position) VALUES (%s, 'AAPL', %s, 'BUY', 10, 0.7,"
        " 101.5, '{{}}', '{{}}', '[]', 'm1', true, '[]', 7) ON CONFLICT DO NOTHING"
    ).format(sql.Identifier(migrated))
    conn.execute(insert, (decision_id, decided_at))
    conn.execute(insert, (decision_id, decided_at))  # a redelivered batch: no second row
    lookup = sql.SQL(
        "SELECT d.symbol FROM {schema}.decision_index AS i JOIN {schema}.decisions AS d"
        " USING (decided_at, decision_id) WHERE i.decision_id = %s"
    ).format(schema=sql.Identifier(migrated))
    assert conn.execute(lookup, (decision_id,)).fetchall() == [("AAPL",)]
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(insert, (decision_id, decided_at - timedelta(seconds=1)))


def test_a_schema_without_partitioned_tables_needs_none(
    conn: psycopg.Connection, schema: str
) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    assert ensure_partitions(conn, schema, date(2024, 1, 1), 3) == []


def test_ensure_partitions_refuses_a_connection_inside_a_transaction(
    database_url: str, migrated: str
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(PartitionError, match="outside any transaction"):
            ensure_partitions(conn, migrated, date(2024, 1, 1), 1)
