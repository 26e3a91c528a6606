"""Checksums of the rebuilt read models: "identical to the tables built live" as a comparison.

Each rebuilt table is summarised by its row count and an md5 over its rows in
key order; columns that record *when* a row was processed (``computed_at``)
are left out, since a rebuild writes them anew.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

__all__ = ["PROCESSING_COLUMNS", "REBUILT_TABLES", "table_checksums"]

REBUILT_TABLES: dict[str, tuple[str, ...]] = {
    "decisions": ("decided_at", "decision_id"),
    "decision_index": ("decision_id",),
    "positions": ("symbol",),
    "forensics": ("decided_at", "decision_id"),
}
"""Each rebuilt table and the key its checksum orders rows by."""
PROCESSING_COLUMNS = {"forensics": {"computed_at"}}
"""When a row was written, not what it says: left out of the checksum."""



def table_checksums(database_url: str, schema: str) -> dict[str, tuple[int, str]]:
    """(rows, md5 over the rows in key order) of every rebuilt table."""
    sums: dict[str, tuple[int, str]] = {}
    with psycopg.connect(database_url) as conn:
        for table, key in REBUILT_TABLES.items():
            columns = [row[0] for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
                " ORDER BY ordinal_position", (schema, table)).fetchall()
                if row[0] not in PROCESSING_COLUMNS.get(table, set())]
            query = sql.SQL("SELECT count(*), coalesce(md5(string_agg(ROW({cols})::text, E'\\n' ORDER BY {key})), '')"
                            " FROM {table}").format(
                cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
                key=sql.SQL(", ").join(map(sql.Identifier, key)),
                table=sql.Identifier(schema, table))
            count, digest = conn.execute(query).fetchone()
            sums[table] = (int(count), str(digest))
    return sums
