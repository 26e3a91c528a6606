"""A projection's dead letters: listed, shown, and re-driven into the projection (``glassbox dlq``).

Re-driving one is the worker's own path for it — decode, check, validate,
prepare, write — and the write and the letter's ``replayed_at`` are ONE
transaction, so a replayed letter is written once, however often a replay is
started or interrupted (the projections' writes are idempotent besides). A
letter that is still poison stays in place with the new reason and error, and
its ``replay_attempts`` counts the try; a transient failure (PostgreSQL
restarting, a missing migration) stops the replay and changes nothing. The
``dlq.<group>`` topic keeps every record it got: it is the audit trail, the
table is the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from glassbox import GlassboxError
from projections.envelopes import check_envelope, decode_envelopes
from projections.failures import describe, is_transient, reason_of
from projections.worker import Projection

__all__ = ["DeadLetterRow", "ReplayReport", "dead_letter", "dead_letters", "replay_dead_letters"]

_COLUMNS = ("consumer_group, topic, partition, source_offset, pack_index, source, reason, error, record_key,"
            " record_value, dead_lettered_at, published_at, dlq_partition, dlq_offset, replayed_at, replay_attempts")


@dataclass(frozen=True)
class DeadLetterRow:
    consumer_group: str
    topic: str
    partition: int
    source_offset: int
    pack_index: int
    source: str
    reason: str
    error: str
    record_key: bytes | None
    record_value: bytes | None
    dead_lettered_at: datetime
    published_at: datetime | None
    dlq_partition: int | None
    dlq_offset: int | None
    replayed_at: datetime | None
    replay_attempts: int


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    still_poison: list[tuple[str, str, str]] = field(default_factory=list)
    """(source, reason, error) of each letter that failed again."""


async def dead_letters(conn: psycopg.AsyncConnection[Any], schema: str, group: str, *, reason: str | None = None,
                       include_replayed: bool = False, limit: int = 100) -> list[DeadLetterRow]:
    """The group's dead letters, oldest first (not those already replayed, unless asked)."""
    where, params = [sql.SQL("consumer_group = %s")], [group]
    if reason is not None:
        where.append(sql.SQL("reason = %s"))
        params.append(reason)
    if not include_replayed:
        where.append(sql.SQL("replayed_at IS NULL"))
    query = sql.SQL("SELECT " + _COLUMNS + " FROM {}.dead_letters WHERE {} ORDER BY dead_lettered_at, source"
                    " LIMIT %s").format(sql.Identifier(schema), sql.SQL(" AND ").join(where))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, [*params, limit])
        return [DeadLetterRow(**row) for row in await cur.fetchall()]


async def dead_letter(conn: psycopg.AsyncConnection[Any], schema: str, group: str, source: str) -> DeadLetterRow:
    """One dead letter by its source (``topic/partition/offset[#index]``).

    Raises:
        GlassboxError: the group has no dead letter of that source.
    """
    query = sql.SQL("SELECT " + _COLUMNS + " FROM {}.dead_letters WHERE consumer_group = %s AND source = %s"
                    ).format(sql.Identifier(schema))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, [group, source])
        row = await cur.fetchone()
    if row is None:
        raise GlassboxError(f"group {group} has no dead letter from {source}: `glassbox dlq list --group ...` "
                            "shows the ones it has")
    return DeadLetterRow(**row)


async def replay_dead_letters(conn: psycopg.AsyncConnection[Any], schema: str, projection: Projection,
                              group: str, letters: Sequence[DeadLetterRow]) -> ReplayReport:
    """Re-drive ``letters`` into ``projection`` one at a time (see the module docstring).

    Raises:
        GlassboxError: a transient failure (the database or the code, not the letter): nothing of the
            letter it stopped at changed; run the replay again once it is fixed.
    """
    report = ReplayReport()
    for letter in letters:
        if letter.replayed_at is not None:
            continue
        try:
            items = decode_envelopes(letter.record_value)
            envelopes = [check_envelope(item) for item in items]
            for envelope in envelopes:
                projection.validate(envelope)
            prepared = [p for p in projection.prepare(envelopes) if p is not None]
            async with conn.transaction():
                if prepared:
                    await projection.write(conn, schema, prepared)
                marked = await conn.execute(sql.SQL(
                    "UPDATE {}.dead_letters SET replayed_at = now(), replay_attempts = replay_attempts + 1"
                    " WHERE consumer_group = %s AND source = %s AND replayed_at IS NULL"
                ).format(sql.Identifier(schema)), [group, letter.source])
                if marked.rowcount != 1:  # another replay took it meanwhile: leave its writes to it
                    raise _AlreadyReplayed()
        except _AlreadyReplayed:
            continue
        except Exception as error:  # noqa: BLE001 - classified below, as the worker classifies
            if is_transient(error):
                raise GlassboxError(f"replaying {letter.source} failed for a reason that is not the letter's "
                                    f"({describe(error)}); nothing of it changed: run the replay again once "
                                    "that is fixed") from error
            await _still_poison(conn, schema, group, letter.source, error)
            report.still_poison.append((letter.source, reason_of(error), describe(error)))
            continue
        report.replayed.append(letter.source)
    return report


class _AlreadyReplayed(Exception):
    pass


async def _still_poison(conn: psycopg.AsyncConnection[Any], schema: str, group: str, source: str,
                        error: BaseException) -> None:
    async with conn.transaction():
        await conn.execute(sql.SQL(
            "UPDATE {}.dead_letters SET reason = %s, error = %s, replay_attempts = replay_attempts + 1"
            " WHERE consumer_group = %s AND source = %s AND replayed_at IS NULL"
        ).format(sql.Identifier(schema)), [reason_of(error), describe(error)[:2_000], group, source])
