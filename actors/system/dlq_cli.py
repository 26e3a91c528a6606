"""``glassbox dlq list --group G``, ``glassbox dlq show --group G SOURCE``, ``glassbox dlq replay --group G --every``.

Inspect a projection's dead letters and re-drive them.

``--group`` is the projection (``forensics``, ``archive``, ``read-models``); the
consumer group is that name with the system's topic prefix. Works on a running
system and on a stopped one (its embedded PostgreSQL, started for the moment).
See :mod:`projections.dlq` for what a replay guarantees.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
import psycopg

from actors.system.services import system_backbone
from backbone.topics import TopicSettings
from glassbox import GlassboxError, Settings
from projections.dlq import DeadLetterRow, dead_letter, dead_letters, replay_dead_letters
from projections.groups import PROJECTIONS
from projections.migrate import apply_migrations
from projections.worker_main import build_projection

__all__ = ["add_dlq_parser"]


def add_dlq_parser(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="a projection's dead letters: list, show, replay")
    actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the group's dead letters not replayed yet, oldest first")
    listing.add_argument("--reason", default=None, help="only those of this reason (e.g. invalid_record)")
    listing.add_argument("--replayed", action="store_true", help="include the ones already replayed")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    show = actions.add_parser("show", help="one dead letter, with its record")
    show.add_argument("source", help="its source as `list` prints it: topic/partition/offset[#index]")
    replay = actions.add_parser("replay", help="re-drive dead letters into their projection")
    replay.add_argument("sources", nargs="*", help="the letters to replay (their sources)")
    replay.add_argument("--every", action="store_true", help="every letter of the group not replayed yet")
    replay.add_argument("--reason", default=None, help="with --every: only those of this reason")
    for sub in (listing, show, replay):
        sub.add_argument("--group", required=True, choices=PROJECTIONS, help="the projection")
    dlq.set_defaults(handler=dlq_command)


def dlq_command(args: argparse.Namespace, settings: Settings) -> int:
    group = TopicSettings.from_settings(settings, prefix=settings.topic_prefix).name(args.group)
    with system_backbone(settings) as (_kafka, database_url):
        apply_migrations(database_url, settings.schema)
        return asyncio.run(_run(args, settings, database_url, group))


async def _run(args: argparse.Namespace, settings: Settings, database_url: str, group: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        if args.dlq_action == "list":
            letters = await dead_letters(conn, settings.schema, group, reason=args.reason,
                                         include_replayed=args.replayed, limit=args.limit)
            for letter in letters:
                print(_line(letter))
            print(f"{len(letters)} dead letter(s) of {group}" + (f" ({args.reason})" if args.reason else ""))
            return 0
        if args.dlq_action == "show":
            print(_shown(await dead_letter(conn, settings.schema, group, args.source)))
            return 0
        if bool(args.sources) == args.every:
            raise GlassboxError("give the sources of the letters to replay, or --every (not both)")
        if args.every:
            letters = await dead_letters(conn, settings.schema, group, reason=args.reason, limit=1_000_000)
        else:
            letters = [await dead_letter(conn, settings.schema, group, source) for source in args.sources]
        report = await replay_dead_letters(conn, settings.schema, build_projection(args.group, settings), group,
                                           letters)
    for source in report.replayed:
        print(f"replayed {source}")
    for source, reason, error in report.still_poison:
        print(f"still poison {source} ({reason}): {error}")
    print(f"{len(report.replayed)} replayed, {len(report.still_poison)} still poison (left in place with "
          "their new reason)")
    return 1 if report.still_poison else 0


def _line(letter: DeadLetterRow) -> str:
    replayed = f"  replayed {letter.replayed_at.isoformat()}" if letter.replayed_at else ""
    tries = f"  {letter.replay_attempts} replay(s)" if letter.replay_attempts else ""
    return (f"{letter.source}  {letter.reason}  {letter.dead_lettered_at.isoformat()}{replayed}{tries}  "
            f"{letter.error[:120]}")


def _shown(letter: DeadLetterRow) -> str:
    try:
        record = orjson.loads(letter.record_value or b"null")
        body = orjson.dumps(record, option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        body = repr((letter.record_value or b"")[:2_000])
    fields = {k: v for k, v in vars(letter).items() if k not in ("record_value", "record_key")}
    fields["record_key"] = (letter.record_key or b"").decode(errors="replace")
    return "\n".join(f"{k}: {v}" for k, v in fields.items()) + f"\nrecord:\n{body}"
