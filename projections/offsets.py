"""Forget the projections' stored Kafka offsets when the broker they refer to lost its data.

The embedded broker keeps its topics in memory: after it restarts, offsets
stored in ``projection_tracking`` point into topics that no longer exist,
and seeking to them would skip the first messages of the new ones. The
supervisor then re-publishes the whole log (the relay from position 0) and
has the workers start from the beginning; every projection is idempotent,
and the forensics projection skips decisions it explained before.

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
    """Delete the tracking rows of topics named with ``topic_prefix``; how many were deleted."""
    pattern = topic_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(
            sql.SQL("DELETE FROM {}.projection_tracking WHERE topic LIKE %s").format(sql.Identifier(schema)),
            (pattern,))
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
