"""A batch whose every record PostgreSQL refuses alone is retried first, dead-lettered only after (real PostgreSQL)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import psycopg
import pytest
from psycopg import sql

from backbone.topics import TopicSettings
from projections.failures import WholeBatchRefused, is_transient
from projections.worker import Projection, ProjectionWorker
from tests.projections.poison_support import archive_envelope
from tests.projections.test_workers import count, migrated  # noqa: F401 - fixture


class _Positions(Projection):
    """Writes each envelope's log position into a table whose CHECK may refuse it."""

    group = "positions"
    topics = ("trading_decisions",)

    async def write(self, conn, schema, items) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(sql.SQL("INSERT INTO {}.refusing VALUES (%s)").format(sql.Identifier(schema)),
                                  [(e["log_position"],) for e in items])


def _process(database_url: str, schema: str, positions: list[int], times: int = 1) -> list[BaseException | None]:
    """Run one batch of records with these log positions through one worker's real write path ``times`` times.

    Returns what each try raised (None: it went through); with ``times=1`` a raise propagates.
    """
    messages = [SimpleNamespace(topic="t", partition=0, offset=i, key=b"AAA",
                                value=orjson.dumps(archive_envelope(p))) for i, p in enumerate(positions)]

    async def run() -> None:
        worker = ProjectionWorker(_Positions(), "unused:9092", database_url, schema, TopicSettings(prefix="x."))
        worker._conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        try:
            for _ in range(times):
                try:
                    await worker._process(messages)
                    outcomes.append(None)
                except WholeBatchRefused as refused:
                    if times == 1:
                        raise
                    outcomes.append(refused)
        finally:
            await worker._conn.close()

    outcomes: list[BaseException | None] = []
    asyncio.run(run())
    return outcomes


@pytest.fixture
def positions_table(database_url, migrated):  # noqa: F811
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {}.refusing (p bigint CHECK (p < 100))").format(sql.Identifier(migrated)))
    return migrated


def test_every_record_refused_alone_is_retried_and_nothing_is_dead_lettered(database_url, positions_table):
    schema = positions_table
    with pytest.raises(WholeBatchRefused) as raised:
        _process(database_url, schema, [100, 101, 102])
    assert is_transient(raised.value) and "CheckViolation" in str(raised.value)
    for table in ("dead_letters", "projection_tracking", "refusing"):
        assert count(database_url, schema, f"SELECT count(*) FROM {{s}}.{table}") == 0, table


def test_a_refused_record_beside_good_ones_is_still_dead_lettered(database_url, positions_table):
    schema = positions_table
    _process(database_url, schema, [1, 100, 2])
    assert count(database_url, schema, "SELECT count(*) FROM {s}.refusing") == 2
    with psycopg.connect(database_url) as conn:
        letters = conn.execute(sql.SQL("SELECT source_offset, reason FROM {}.dead_letters").format(
            sql.Identifier(schema))).fetchall()
    assert letters == [(1, "database_refused")]
    assert count(database_url, schema, "SELECT next_offset FROM {s}.projection_tracking") == 3


def test_a_lone_refused_record_is_dead_lettered(database_url, positions_table):
    """With one record the write cannot be told from the record: the record is dead-lettered."""
    _process(database_url, positions_table, [100])
    assert count(database_url, positions_table, "SELECT count(*) FROM {s}.dead_letters") == 1


def test_a_batch_refused_whole_on_every_retry_is_dead_lettered_one_by_one(database_url, positions_table):
    """A run of bad records never stops the group for good: after max_retries whole refusals they are dead letters."""
    schema = positions_table
    retries = ProjectionWorker(_Positions(), "unused:9092", database_url, schema, TopicSettings()).settings.max_retries
    outcomes = _process(database_url, schema, [100, 101, 102], times=retries + 1)
    assert all(isinstance(o, WholeBatchRefused) for o in outcomes[:retries]) and outcomes[retries] is None, outcomes
    with psycopg.connect(database_url) as conn:
        letters = conn.execute(sql.SQL("SELECT source_offset, reason FROM {}.dead_letters ORDER BY 1").format(
            sql.Identifier(schema))).fetchall()
    assert letters == [(0, "database_refused"), (1, "database_refused"), (2, "database_refused")]
    assert count(database_url, schema, "SELECT next_offset FROM {s}.projection_tracking") == 3
