"""Insert a batch of rows with one binary COPY, idempotently: ``INSERT ... ON CONFLICT DO NOTHING`` in bulk.

COPY cannot skip a row whose key exists (an event the relay sent twice), so the rows
are copied into a temporary staging table of the session and moved from there into
the target by one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``. Per batch that is
three statements whatever its size, where an ``INSERT`` per row cost a statement (and
in PostgreSQL an executor start) per row, and binary COPY formats each row in C.

The staging table is ``ON COMMIT DELETE ROWS`` and the move deletes what it reads, so
a later write in the same transaction (the worker's bisection writes halves in
savepoints) never sees an earlier one's rows. A staging column may be typed more
loosely than its target (ids as ``text``), and cast in the move: a bad value then fails
the move, inside the caller's savepoint, which is what the bisection needs to find it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import psycopg
from psycopg import sql

__all__ = ["BulkInsert"]


@dataclass(frozen=True)
class BulkInsert:
    """``rows`` into ``schema.table`` through a staging table; keys already there are skipped."""

    table: str
    columns: tuple[tuple[str, str, str], ...]
    """(target column, staging type, expression over the staging column written into it)."""
    _statements: dict[str, tuple[bytes, bytes, bytes]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def types(self) -> list[str]:
        """The staging columns' types, in order: what COPY dumps each value of a row as."""
        return [kind for _, kind, _ in self.columns]

    async def write(self, conn: psycopg.AsyncConnection[Any], schema: str, rows: Iterable[Sequence[Any]]) -> None:
        """Insert ``rows`` (tuples in the order of :attr:`columns`) inside the open transaction of ``conn``."""
        create, copy_into, move = self._for(conn, schema)
        async with conn.cursor() as cur:
            await cur.execute(create)
            async with cur.copy(copy_into) as copy:
                copy.set_types(self.types)
                for row in rows:
                    await copy.write_row(row)
            await cur.execute(move)

    def _for(self, conn: psycopg.AsyncConnection[Any], schema: str) -> tuple[bytes, bytes, bytes]:
        """The three statements for ``schema``, rendered once (a Composed renders in Python every time)."""
        found = self._statements.get(schema)
        if found is None:
            staging = sql.Identifier(f"glassbox_{self.table}_staging")
            names = sql.SQL(", ").join(sql.Identifier(name) for name, _, _ in self.columns)
            create = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                staging, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                                           for n, t, _ in self.columns))
            copy_into = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(staging, names)
            move = sql.SQL("WITH moved AS (DELETE FROM {} RETURNING *) INSERT INTO {} ({}) SELECT {} FROM moved"
                           " ON CONFLICT DO NOTHING").format(
                staging, sql.Identifier(schema, self.table), names,
                sql.SQL(", ").join(sql.SQL(expression) for _, _, expression in self.columns))
            found = tuple(s.as_bytes(conn) for s in (create, copy_into, move))  # type: ignore[assignment]
            self._statements[schema] = found  # type: ignore[assignment]
        return found  # type: ignore[return-value]
