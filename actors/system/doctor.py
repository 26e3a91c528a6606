"""``glassbox doctor``: read a running or stopped system's ledger from its owners, check it, print it.

Where each number lives:

* ticks published: each symbol's stream (:class:`edge.tick_stream.TickKeys`);
  pending and never read: its ``desks`` consumer group (:mod:`actors.system.stuck`);
* ticks dead-lettered: ``ticks:dead`` (per entry: symbol, stage, entry id) and
  ``ticks:dead:count`` (per reason); those of stage ``sweep`` were deleted from
  their stray stream (:mod:`edge.stray_streams`), so count as swept, not
  against the stream's length;
* ticks decided, events committed, log gaps: each shard store's log
  (:class:`edge.store_layout.StoreKeys`, read in pages with progress);
* events relayed: each relay's position (:class:`backbone.relay.RelayKeys`);
* archived, decision rows, explained: ``event_archive``, ``decisions``,
  ``forensics`` in the system's schema;
* groups' places: ``projection_tracking`` against the topics' ends
  (:func:`projections.lag.partition_lags`); their dead letters: the
  ``dead_letters`` table, written with the batch's offsets, by reason, and the
  ``dlq.<group>`` topics published from it, for a record sent twice
  (:func:`projection_dead_letters`, :func:`dead_lettered_twice_in_topics`).

For a stopped system the embedded Redis and PostgreSQL are started on their
data directories and stopped after. The embedded broker keeps nothing across
a stop, so for such a system the groups' places and the ``dlq.<group>``
topics cannot be checked (the doctor says so); everything else can, the
projections' dead letters included (they are rows in PostgreSQL). The
counting and the verdict are :mod:`actors.system.ledger`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import psycopg
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql

from actors.sharding import shard_of
from aggregates.desk import SymbolDesk
from actors.system.ledger import DecisionTally, Ledger, LogGaps, ProjectionCounts, StoreEvents, SymbolTicks
from actors.system.status import read_status
from actors.system.stuck import tick_backlog
from backbone.relay import RelayPosition
from backbone.topics import TopicSettings, dead_letter_topic
from edge.redis_server import EmbeddedRedis
from edge.store_layout import StoreKeys, log_head
from edge.stray_streams import SWEEP_STAGE, tick_streams
from edge.system_keys import SystemKeys
from edge.tick_stream import TickKeys
from glassbox import GlassboxError, Settings
from projections.groups import PROJECTIONS
from projections.lag import partition_lags_at
from projections.postgres_server import EmbeddedPostgres, reachable_data_dir
from projections.read_models import DECISIONS

__all__ = ["DoctorServices", "doctor_services", "examine", "ledger_json", "print_ledger", "projection_dead_letters",
           "run_doctor"]

_DECISION_TOPIC = SymbolDesk.DecisionTaken.TOPIC.encode()
_SWEEP_STAGE = SWEEP_STAGE.encode()
PAGE = 5_000
"""Log entries read per round trip."""


@dataclass(frozen=True)
class DoctorServices:
    """Where the system's data is; ``kafka_servers`` None when the broker's data cannot be read."""

    redis_url: str
    kafka_servers: str | None
    database_url: str | None
    running: bool
    notes: tuple[str, ...] = ()


@contextlib.contextmanager
def doctor_services(settings: Settings) -> Iterator[DoctorServices]:
    """The services of this home's system: given by URL, a running system's, or embedded ones on their data."""
    try:
        status: dict[str, Any] | None = read_status(settings.home)
    except GlassboxError:
        status = None
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        redis_url = settings.redis_url or (status and str(status["redis_url"])) or \
            stack.enter_context(EmbeddedRedis(settings.redis_dir)).url
        kafka = settings.kafka_bootstrap_servers or (status and str(status["kafka_servers"])) or None
        if kafka is None:
            notes.append("the embedded broker keeps no data across a stop: the groups' offsets against the "
                         "topics and the dlq.<group> topics are not checked")
        database_url = settings.database_url or (status and str(status["database_url"])) or None
        if database_url is None:
            data_dir = settings.home / "postgres"
            if data_dir.exists():
                database_url = stack.enter_context(EmbeddedPostgres(reachable_data_dir(data_dir))).url
            else:
                notes.append(f"no PostgreSQL data in {data_dir}: the tables are not checked")
        yield DoctorServices(redis_url, kafka, database_url, status is not None, tuple(notes))


def examine(settings: Settings, services: DoctorServices, progress: Callable[[str], None] = lambda line: None) -> Ledger:
    """Read every number of the ledger (:mod:`actors.system.ledger` says what must balance).

    Downstream first, so that on a running system a later stage can only trail
    an earlier one: the tables (one snapshot), then the groups' places, then
    the relay positions, then each store's head and its log up to that head,
    then the tick dead letters, then the tick streams and their backlogs.
    """
    ledger = Ledger(running=services.running, notes=list(services.notes))
    topics = TopicSettings.from_settings(settings, prefix=settings.topic_prefix)
    archive: dict[str, dict[str, int]] = {}
    if services.database_url:
        progress("reading the read models and the projections' dead letters ...")
        archive, ledger.tables, ledger.projection_dead_letters, ledger.projection_dead_letters_unpublished = \
            _read_tables(services.database_url, settings.schema, topics)
    if services.kafka_servers and services.database_url:
        progress("reading the projection groups' offsets and dead-letter topics ...")
        ledger.partitions, _ = asyncio.run(partition_lags_at(services.database_url, settings.schema,
                                                             services.kafka_servers, topics))
        ledger.projection_dead_lettered_twice = asyncio.run(
            dead_lettered_twice_in_topics(services.kafka_servers, topics))
    keys, tick_keys = SystemKeys(settings.namespace), TickKeys(settings.namespace)
    client = redis.Redis.from_url(services.redis_url)
    try:
        shards = keys.recorded_shards(client)
        if shards is None:
            raise GlassboxError(f"no Glassbox system has run on this Redis (namespace "
                                f"{settings.namespace or 'default'}): nothing to check")
        stores = [keys.shard_store(i) for i in range(shards)]
        relayed = [RelayPosition(client, store, "relay").get() for store in stores]
        tally = DecisionTally()
        for i, (store, position) in enumerate(zip(stores, relayed)):
            row = _read_store(client, store, f"relay-shard-{i}", position, tally, not services.running, progress)
            ledger.stores.append(StoreEvents(**row, **archive.get(store, {"archived": 0, "archived_distinct": 0}))
                                 if services.database_url else StoreEvents(**row, archived=None,
                                                                           archived_distinct=None))
        progress("reading the tick dead letters ...")
        dead = _tick_dead_letters(client, tick_keys)
        ledger.tick_dead_letter_entries, ledger.tick_dead_letters = dead.entries, dead.by_reason
        progress("reading the tick streams ...")
        for symbol in _symbols(client, tick_keys):
            shard = f"shard-{shard_of(symbol, shards)}"
            backlog = tick_backlog(client, tick_keys, symbol, shard)
            ledger.symbols.append(SymbolTicks(
                symbol, shard, client.xlen(tick_keys.stream(symbol)), tally.decided.get(symbol, 0),
                dead.by_symbol.get(symbol, 0), backlog.pending, backlog.undelivered, dead.ingest.get(symbol, 0),
                dead.swept.get(symbol, 0), tuple(tally.repeated.get(symbol, ())), tuple(dead.twice.get(symbol, ())),
                backlog.oldest))
    finally:
        client.close()
    return ledger


def _read_store(client: redis.Redis, store: str, relay: str, relayed: int, tally: DecisionTally,
                past_head: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """The store's log up to its head (entries past it too when ``past_head``: a stopped system has none)."""
    head = log_head(client, store)
    gaps = LogGaps(head)
    decisions = 0
    log = StoreKeys(store).log
    for entry_id, fields in _entries(client, log, "-", str(head)):
        gaps.add(int(entry_id.split(b"-")[0]))
        if fields.get(b"t") == _DECISION_TOPIC:
            state = orjson.loads(fields[b"s"])
            tally.add(str(state.get("symbol")), str(state.get("correlation_id")))
            decisions += 1
        if gaps.entries % PAGE == 0:
            progress(f"{store}: {gaps.entries:,} of {head:,} log entries read")
    if past_head:
        for entry_id, _ in _entries(client, log, str(head + 1), "+"):
            gaps.add(int(entry_id.split(b"-")[0]))
    return {"store": store, "relay": relay, "head": head, "entries": gaps.entries,
            "gaps": tuple(gaps.gaps), "beyond_head": tuple(gaps.beyond), "relayed": relayed, "decisions": decisions}


def _entries(client: redis.Redis, stream: str, first: str, last: str) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of ``stream`` from ``first`` to ``last`` (inclusive), read in pages of :data:`PAGE`."""
    while page := client.xrange(stream, first, last, count=PAGE):
        yield from page
        first = "(" + page[-1][0].decode()


@dataclass
class _TickDeadLetters:
    entries: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    by_symbol: dict[str, int] = field(default_factory=dict)
    """Stream entries a desk dead-lettered (they stay in the stream)."""
    swept: dict[str, int] = field(default_factory=dict)
    """Stream entries the stray sweep dead-lettered (stage ``sweep``: deleted from the stream)."""
    ingest: dict[str, int] = field(default_factory=dict)
    twice: dict[str, list[str]] = field(default_factory=dict)


def _tick_dead_letters(client: redis.Redis, keys: TickKeys) -> _TickDeadLetters:
    """``ticks:dead`` per symbol and stage, up to its last entry when the per-reason counts were read.

    The counts and the newest entry are read in one ``MULTI`` (a dead letter and its count are
    written in one), so the entries counted are exactly those the counts are of.
    """
    with client.pipeline(transaction=True) as pipe:
        counts, newest = pipe.hgetall(keys.dead_letter_counts).xrevrange(keys.dead_letters, count=1).execute()
    found = _TickDeadLetters(by_reason={k.decode(): int(v) for k, v in counts.items()})
    if not newest:
        return found
    seen: set[tuple[bytes, bytes]] = set()
    for _, fields in _entries(client, keys.dead_letters, "-", newest[0][0].decode()):
        found.entries += 1
        symbol = fields.get(b"symbol", b"").decode(errors="replace")
        entry_id = fields.get(b"entry_id")
        if entry_id is None:
            found.ingest[symbol] = found.ingest.get(symbol, 0) + 1
        elif (fields[b"symbol"], entry_id) in seen:
            found.twice.setdefault(symbol, []).append(entry_id.decode(errors="replace"))
        else:
            seen.add((fields[b"symbol"], entry_id))
            counted = found.swept if fields.get(b"stage") == _SWEEP_STAGE else found.by_symbol
            counted[symbol] = counted.get(symbol, 0) + 1
    return found


def _symbols(client: redis.Redis, keys: TickKeys) -> list[str]:
    found = {keys.symbol_of(name) for name in tick_streams(client, keys)}
    found.discard(keys.symbol_of(keys.dead_letters))
    return sorted(found)


def _read_tables(database_url: str, schema: str, topics: TopicSettings
                 ) -> tuple[dict[str, dict[str, int]], ProjectionCounts, dict[str, dict[str, int]], dict[str, int]]:
    """The archive per store, the read models, the projections' dead letters: one snapshot of them all."""
    with psycopg.connect(database_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            return (_archive_counts(conn, schema), _table_counts(conn, schema),
                    *_dead_letters_by_group(conn, schema, topics))


def _archive_counts(conn: psycopg.Connection[Any], schema: str) -> dict[str, dict[str, int]]:
    rows = conn.execute(sql.SQL("SELECT store, count(*), count(DISTINCT event_id) FROM {}.event_archive "
                                "GROUP BY store").format(sql.Identifier(schema))).fetchall()
    return {store: {"archived": n, "archived_distinct": d} for store, n, d in rows}


def _table_counts(conn: psycopg.Connection[Any], schema: str) -> ProjectionCounts:
    s = sql.Identifier(schema)

    def one(query: str, *params: object) -> Any:
        return conn.execute(sql.SQL(query).format(s=s), params or None).fetchone()[0]

    def some(query: str) -> tuple[str, ...]:
        return tuple(str(r[0]) for r in conn.execute(sql.SQL(query).format(s=s)).fetchall())

    return ProjectionCounts(
        decision_rows=one("SELECT count(*) FROM {s}.decisions"),
        decision_ids=one("SELECT count(DISTINCT decision_id) FROM {s}.decisions"),
        ticks_decided_twice=some("SELECT symbol || ' ' || correlation_id FROM {s}.decisions "
                                 "GROUP BY symbol, correlation_id HAVING count(DISTINCT decision_id) > 1 LIMIT 1000"),
        archived_decisions=one("SELECT count(*) FROM {s}.event_archive WHERE event_type = ANY(%s)", list(DECISIONS)),
        forensics_rows=one("SELECT count(*) FROM {s}.forensics"),
        forensics_ids=one("SELECT count(DISTINCT decision_id) FROM {s}.forensics"),
        explained=one("SELECT count(DISTINCT d.decision_id) FROM {s}.decisions d "
                      "JOIN {s}.forensics f USING (decision_id)"),
        unexplained=some("SELECT d.decision_id FROM {s}.decisions d WHERE NOT EXISTS "
                         "(SELECT 1 FROM {s}.forensics f WHERE f.decision_id = d.decision_id) LIMIT 10"),
        explained_orphans=one("SELECT count(*) FROM {s}.forensics f WHERE NOT EXISTS "
                              "(SELECT 1 FROM {s}.decisions d WHERE d.decision_id = f.decision_id)"),
    )


def projection_dead_letters(database_url: str, schema: str, topics: TopicSettings
                            ) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Each group's dead letters by reason, and how many are not yet published to ``dlq.<group>``.

    Read from the ``dead_letters`` table (:mod:`projections.dead_letters`): a worker writes a
    record's row in the transaction of its batch, so the table is the record of truth, readable
    for a stopped system too; the topic is published from it (an outbox) and may trail it.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        return _dead_letters_by_group(conn, schema, topics)


def _dead_letters_by_group(conn: psycopg.Connection[Any], schema: str, topics: TopicSettings
                           ) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    by_group = {topics.name(group): group for group in PROJECTIONS}
    query = sql.SQL("SELECT consumer_group, reason, count(*), count(*) FILTER (WHERE published_at IS NULL) "
                    "FROM {}.dead_letters GROUP BY consumer_group, reason").format(sql.Identifier(schema))
    reasons: dict[str, dict[str, int]] = {group: {} for group in PROJECTIONS}
    unpublished: dict[str, int] = {}
    for consumer_group, reason, count, waiting in conn.execute(query).fetchall():
        group = by_group.get(consumer_group)
        if group is None:
            continue  # another system's prefix in the same schema
        reasons[group][reason] = count
        if waiting:
            unpublished[group] = unpublished.get(group, 0) + waiting
    return reasons, unpublished


async def dead_lettered_twice_in_topics(kafka_servers: str, topics: TopicSettings) -> dict[str, list[str]]:
    """The sources each group's ``dlq.<group>`` topic holds more than once (read from start to end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        twice: dict[str, list[str]] = {}
        for group in PROJECTIONS:
            name = topics.name(dead_letter_topic(group))
            partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
            if not partitions:
                continue
            ends = await consumer.end_offsets(partitions)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            seen: set[bytes] = set()
            left = {tp for tp, end in ends.items() if end > 0}
            while left:
                batches = await consumer.getmany(*left, timeout_ms=2_000)
                if not batches:
                    break  # the broker gives no more: count what was read
                for tp, messages in batches.items():
                    for message in messages:
                        headers = dict(message.headers or ())
                        source = headers.get("source")
                        if source is not None and source in seen:
                            twice.setdefault(group, []).append(source.decode(errors="replace"))
                        elif source is not None:
                            seen.add(source)
                        if message.offset + 1 >= ends[tp]:
                            left.discard(tp)
        return twice
    finally:
        await consumer.stop()


def print_ledger(ledger: Ledger, out: Callable[[str], None] = print) -> None:
    """The ledger as tables, then every violation, then the verdict line."""
    state = "running" if ledger.running else "stopped"
    out(f"glassbox doctor: a {state} system" + (" (what is in flight is not a violation)" if ledger.running else ""))
    for note in ledger.notes:
        out(f"  note: {note}")
    out("")
    out("ticks, per symbol")
    _table(out, ["symbol", "shard", "published", "decided", "dead-lettered", "undecided", "pending", "unread",
                 "refused at ingest", "swept"],
           [[s.symbol, s.shard, s.published, s.decided, s.dead_lettered, s.undecided, s.pending, s.undelivered,
             s.rejected_at_ingest, s.swept] for s in ledger.symbols]
           + [["all", "", *(sum(getattr(s, f) for s in ledger.symbols)
                            for f in ("published", "decided", "dead_lettered", "undecided", "pending", "undelivered",
                                      "rejected_at_ingest", "swept"))]])
    out("")
    out("events, per store")
    _table(out, ["store", "committed", "log entries", "gaps", "relayed", "archived", "decisions"],
           [[e.store, e.head, e.entries, len(e.gaps) + len(e.beyond_head), e.relayed,
             "?" if e.archived is None else e.archived, e.decisions] for e in ledger.stores])
    if ledger.tables is not None:
        t = ledger.tables
        out("")
        out("decisions")
        _table(out, ["committed", "archived", "rows", "distinct ids", "explained", "forensics rows",
                     "dead-lettered by forensics"],
               [[sum(e.decisions for e in ledger.stores), t.archived_decisions, t.decision_rows, t.decision_ids,
                 t.explained, t.forensics_rows,
                 "?" if ledger.projection_dead_letters is None else
                 sum(ledger.projection_dead_letters.get("forensics", {}).values())]])
    if ledger.partitions is not None:
        out("")
        out("projection groups (partitions behind)")
        groups = sorted({p.group for p in ledger.partitions})
        _table(out, ["group", "partitions", "at end", "messages behind"],
               [[g, sum(p.group == g for p in ledger.partitions),
                 sum(p.group == g and not p.behind for p in ledger.partitions),
                 sum(p.behind for p in ledger.partitions if p.group == g)] for g in groups])
    out("")
    out("dead letters, by reason")
    rows: list[list[object]] = [["ticks:dead", reason, n] for reason, n in sorted(ledger.tick_dead_letters.items())]
    for group, reasons in sorted((ledger.projection_dead_letters or {}).items()):
        rows += [[f"dead_letters {group}", reason, n] for reason, n in sorted(reasons.items())]
    _table(out, ["where", "reason", "count"], rows or [["(none)", "", 0]])
    for group, waiting in sorted(ledger.projection_dead_letters_unpublished.items()):
        out(f"  {waiting:,} of {group}'s dead letters are not yet in dlq.{group} (its worker publishes them next)")
    findings = ledger.findings()
    out("")
    for finding in findings:
        out(f"VIOLATION {finding.line()}")
    out("verdict: the ledger balances" if not findings else
        f"verdict: {len(findings)} violation(s): {', '.join(sorted({f.check for f in findings}))}")


def ledger_json(ledger: Ledger) -> dict[str, Any]:
    """The ledger for machines: every count, the findings and the verdict."""
    findings = ledger.findings()
    return {**asdict(ledger), "findings": [asdict(f) for f in findings], "balances": not findings}


def run_doctor(settings: Settings, as_json: bool = False) -> int:
    """``glassbox doctor``: 0 when the ledger balances, 1 when it does not (each violation is printed)."""
    def progress(line: str) -> None:
        print(f"\r{line[:110]:<110}", end="", file=sys.stderr, flush=True)

    with doctor_services(settings) as services:
        ledger = examine(settings, services, progress)
    print("\r" + " " * 110 + "\r", end="", file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps(ledger_json(ledger), indent=2, default=list))
    else:
        print_ledger(ledger)
    return 0 if ledger.balances() else 1


def _table(out: Callable[[str], None], header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[f"{c:,}" if isinstance(c, int) else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        out("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            out("  " + "  ".join("-" * w for w in widths))
