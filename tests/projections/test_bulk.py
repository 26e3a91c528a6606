"""BulkInsert on the real PostgreSQL: keys already there are skipped, and the staging table never grows."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg import sql

from projections.bulk import BulkInsert
from projections.pg_json import use_orjson

_DOCS = BulkInsert("docs", (("id", "int8", "id"), ("doc", "json", "doc")))


def test_batches_skip_existing_keys_and_leave_no_rows_in_the_staging_table(database_url: str, schema: str) -> None:
    # Autovacuum never visits a temporary table: rows deleted from it stay as dead tuples that
    # every later scan of it reads. A staging table that kept them across transactions made each
    # batch slower than the one before (measured under perf.pipeline), so after each commit the
    # staging table must be empty down to its pages, not only of live rows.
    async def run() -> tuple[list[int], int, list[object]]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            use_orjson(conn)
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            await conn.execute(sql.SQL("CREATE TABLE {}.docs (id int8 PRIMARY KEY, doc json)").format(
                sql.Identifier(schema)))
            pages = []
            for batch in range(5):
                rows = [(i, {"batch": batch, "i": i}) for i in range(batch * 50, batch * 50 + 100)]  # half seen before
                async with conn.transaction():
                    await _DOCS.write(conn, schema, rows)
                cursor = await conn.execute("SELECT pg_relation_size('pg_temp.glassbox_docs_staging')")
                pages.append((await cursor.fetchone())[0])
            cursor = await conn.execute(sql.SQL("SELECT count(*) FROM {}.docs").format(sql.Identifier(schema)))
            total = (await cursor.fetchone())[0]
            cursor = await conn.execute(sql.SQL("SELECT doc FROM {}.docs WHERE id = 75").format(sql.Identifier(schema)))
            kept = (await cursor.fetchone())[0]
            return pages, total, kept

    pages, total, kept = asyncio.run(run())
    assert pages == [0] * 5
    assert total == 4 * 50 + 100
    assert kept == {"batch": 0, "i": 75}  # the first write of a key stays (ON CONFLICT DO NOTHING)
