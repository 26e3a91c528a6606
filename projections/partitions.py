"""Daily range partitions for the time-keyed tables when TimescaleDB is absent.

In native storage mode (see :mod:`projections.migrate`) ``event_archive``,
``decisions`` and ``forensics`` are ``PARTITION BY RANGE`` tables with a
DEFAULT partition. :func:`ensure_partitions` creates their daily partitions
ahead of time; call it from a daily job, and before a backtest writes rows
for past days. In TimescaleDB mode the schema holds no native range-partitioned
table and the call does nothing, so callers need not know the mode.

Days are UTC days: partition ``decisions_p20240102`` holds
``[2024-01-02 00:00+00, 2024-01-03 00:00+00)``. Old partitions are not
dropped here (TimescaleDB's retention policy does that in its mode): detach
and drop them by hand once they are past the retention you want.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from glassbox import GlassboxError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["PartitionError", "ensure_partitions", "lock_schema"]

_LOCK_PREFIX = "glassbox:ddl:"
_MOVING_FLAG = "glassbox.moving_partition_rows"  # read by refuse_archive_change()
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL silently truncates longer names

_RANGE_PARTITIONED_TABLES = """
SELECT parent.relname, key.attname, default_partition.relname
FROM pg_partitioned_table AS partitioned
JOIN pg_class AS parent ON parent.oid = partitioned.partrelid
JOIN pg_namespace AS namespace ON namespace.oid = parent.relnamespace
JOIN pg_attribute AS key
  ON key.attrelid = parent.oid AND key.attnum = partitioned.partattrs[0]
LEFT JOIN pg_class AS default_partition ON default_partition.oid = partitioned.partdefid
WHERE namespace.nspname = %s
  AND partitioned.partstrat = 'r'
  AND partitioned.partnatts = 1
  AND key.atttypid = 'timestamptz'::regtype
  AND NOT parent.relispartition
ORDER BY parent.relname
"""


class PartitionError(GlassboxError):
    """Daily partitions could not be created; the message names the schema and the cause."""


@dataclass(frozen=True)
class _PartitionedTable:
    name: str
    time_column: str
    default_partition: str | None


def lock_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Take the advisory lock that serialises DDL on ``schema`` until the transaction ends.

    Migrations and partition maintenance both hold it, so concurrent runners
    (several projection workers starting at once) never race on DDL. Call it
    inside a transaction; outside one it is released at once.
    """
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_LOCK_PREFIX + schema,)
    )


def ensure_partitions(
    conn: psycopg.Connection[Any], schema: str, start: date, days: int
) -> list[str]:
    """Create the daily partitions for ``days`` UTC days from ``start`` on; return their names.

    Covers every range-partitioned table in ``schema`` whose key is one
    ``timestamptz`` column. Idempotent: existing partitions are skipped. Rows
    the DEFAULT partition already holds for a new day are moved into that
    day's partition, so creating a partition late never fails. Each
    table-day is its own short transaction, so ``conn`` must not be inside
    a transaction.

    Raises:
        ValueError: ``days`` is negative.
        PartitionError: ``conn`` is inside a transaction, a partition name
            would be too long, or PostgreSQL refused the DDL (for instance a
            differently named partition already covers the day).
    """
    if days < 0:
        msg = f"days must not be negative, not {days!r}"
        raise ValueError(msg)
    if conn.info.transaction_status != TransactionStatus.IDLE:
        msg = (
            "ensure_partitions needs a connection outside any transaction "
            "(it commits each partition itself): commit or roll back first"
        )
        raise PartitionError(msg)
    created: list[str] = []
    try:
        for table in _range_partitioned_tables(conn, schema):
            for offset in range(days):
                name = _ensure_day(conn, schema, table, start + timedelta(days=offset))
                if name is not None:
                    created.append(name)
    except psycopg.Error as error:
        msg = f"could not create daily partitions in schema {schema!r}: {error}"
        raise PartitionError(msg) from error
    return created


def _range_partitioned_tables(
    conn: psycopg.Connection[Any], schema: str
) -> Sequence[_PartitionedTable]:
    with conn.cursor(row_factory=tuple_row) as cursor:
        rows = cursor.execute(_RANGE_PARTITIONED_TABLES, (schema,)).fetchall()
    return [_PartitionedTable(*row) for row in rows]


def _ensure_day(
    conn: psycopg.Connection[Any], schema: str, table: _PartitionedTable, day: date
) -> str | None:
    """Create ``table``'s partition for ``day`` unless it exists; return its name if created.

    Built as a standalone table and then attached, because ATTACH PARTITION
    takes only a SHARE UPDATE EXCLUSIVE lock on the parent (reads and writes
    go on) where CREATE TABLE ... PARTITION OF takes an ACCESS EXCLUSIVE one.
    ATTACH adds the parent's indexes, keys and row triggers to the new table.
    """
    name = f"{table.name}_p{day:%Y%m%d}"
    if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        msg = f"partition name {name!r} is longer than 63 bytes: shorten the table name"
        raise PartitionError(msg)
    lower = datetime.combine(day, time.min, tzinfo=UTC)
    span = (lower, lower + timedelta(days=1))
    parent = sql.Identifier(schema, table.name)
    partition = sql.Identifier(schema, name)
    with conn.transaction():
        lock_schema(conn, schema)
        if _exists(conn, schema, name):
            return None
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                "INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION)"
            ).format(partition, parent)
        )
        _copy_statistics_targets(conn, parent, partition)
        if table.default_partition is not None:
            default = sql.Identifier(schema, table.default_partition)
            _move_rows(conn, default, partition, table, span)
        bounds = sql.SQL("FOR VALUES FROM ({}) TO ({})").format(*map(sql.Literal, span))
        conn.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(parent, partition, bounds)
        )
    return name


def _copy_statistics_targets(conn: psycopg.Connection[Any], parent: sql.Identifier, partition: sql.Identifier) -> None:
    """Give ``partition`` the parent's per-column statistics targets, which LIKE leaves out.

    Autovacuum analyzes the partitions, not the parent: a target set on the parent (0 for the
    JSON documents, migration 0005) only counts if every partition has it too.
    """
    with conn.cursor(row_factory=tuple_row) as cursor:
        targets = cursor.execute(
            "SELECT attname, attstattarget FROM pg_attribute WHERE attrelid = %s::regclass"
            " AND attnum > 0 AND NOT attisdropped AND attstattarget >= 0",
            (parent.as_string(conn),)).fetchall()
    if targets:
        conn.execute(sql.SQL("ALTER TABLE {} {}").format(partition, sql.SQL(", ").join(
            sql.SQL("ALTER COLUMN {} SET STATISTICS {}").format(sql.Identifier(name), sql.Literal(target))
            for name, target in targets)))


def _exists(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    with conn.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute(
            "SELECT 1 FROM pg_class JOIN pg_namespace ON pg_namespace.oid = relnamespace "
            "WHERE nspname = %s AND relname = %s",
            (schema, name),
        ).fetchone()
    return row is not None


def _move_rows(
    conn: psycopg.Connection[Any],
    default: sql.Identifier,
    partition: sql.Identifier,
    table: _PartitionedTable,
    span: tuple[datetime, datetime],
) -> None:
    """Move the DEFAULT partition's rows for ``span`` into the new, not yet attached, table.

    PostgreSQL refuses to attach a partition whose range the DEFAULT
    partition holds rows for, so a day created late takes its rows along.
    The primary key leads with the time column, so this is an index range
    scan, and usually finds nothing.
    """
    # The archive's immutability trigger lets this move through; the flag is
    # switched off again at once and lapses with the transaction anyway.
    conn.execute("SELECT set_config(%s, 'on', true)", (_MOVING_FLAG,))
    column = sql.Identifier(table.time_column)
    conn.execute(
        sql.SQL(
            "WITH moved AS (DELETE FROM {} WHERE {} >= %s AND {} < %s RETURNING *) "
            "INSERT INTO {} SELECT * FROM moved"
        ).format(default, column, column, partition),
        span,
    )
    conn.execute("SELECT set_config(%s, 'off', true)", (_MOVING_FLAG,))
