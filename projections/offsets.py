"""Forget the projections' stored Kafka offsets when the broker they refer to lost its data.

The embedded broker keeps its topics in memory: after it restarts, offsets
stored in ``projection_tracking`` point into topics that no longer exist,
and seeking to them would skip the first messages of the new ones. The
supervisor then re-publishes the whole log (the relay from position 0) and
has the workers start from the beginning; every projection is idempotent,
and the forensics projection skips decisions it explained before.

The groups' ``dead_letters`` rows of those topics go too. They are keyed by
(group, topic, partition, offset, pack index), offsets of the broker that lost
its data, and their ``dlq.<group>`` records (and the marks pointing at them)
were in that broker: kept, a new poison record at an old dead-lettered offset
would be committed with no row and never reach the fresh dead-letter topic,
and an old one re-published at a new offset would have a second row. Deleted,
the re-published poison records are dead-lettered again, once each, at their
new offsets, and the table matches the fresh, empty dead-letter topic again.
(Keeping them aside under a broker generation would need a key column and a
reader for rows that no topic holds any more; nothing needs that history.)
A rebuild's one-off groups lose their rows with their offsets the same way;
their ``dlq`` topics keep the records.

    python -m projections.offsets --schema glassbox [--topic-prefix P]
"""

from __future__ import annotations

import argparse
import sys

import psycopg
from psycopg import sql

from glassbox import GlassboxError, Settings

__all__ = ["forget_offsets"]


def forget_offsets(database_url: str, schema: str, topic_prefix: str = "") -> int:
    """Delete the tracking and dead-letter rows of topics named with ``topic_prefix``; how many offsets.

    Both in one transaction, with the workers stopped: a worker never sees offsets forgotten
    and their dead letters kept, or the other way round.
    """
    pattern = topic_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with psycopg.connect(database_url) as conn, conn.transaction():
        for table in ("dead_letters", "projection_tracking"):
            cursor = conn.execute(
                sql.SQL("DELETE FROM {} WHERE topic LIKE %s").format(sql.Identifier(schema, table)), (pattern,))
        return cursor.rowcount


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projections.offsets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schema", default="glassbox")
    parser.add_argument("--topic-prefix", default="")
    args = parser.parse_args(argv)
    try:
        url = Settings.from_env().database_url
        if not url:
            print("offsets: set DATABASE_URL", file=sys.stderr)
            return 2
        deleted = forget_offsets(url, args.schema, args.topic_prefix)
    except (GlassboxError, psycopg.Error) as error:
        print(f"offsets: {error}", file=sys.stderr)
        return 1
    print(f"schema {args.schema}: forgot {deleted} stored offsets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
