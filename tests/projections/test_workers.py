"""Projection workers on the real broker and PostgreSQL: every decision once, poison aside."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from psycopg import sql

from backbone.broker import run_coroutine
from backbone.envelope import RecordBuilder, read_envelope, topic_for, unpack
from backbone.relay import Relay, RelaySettings
from backbone.topics import (
    TopicSettings,
    dead_letter_topic,
    ensure_topics,
    glassbox_topics,
)
from edge.eventstore import RedisApplicationRecorder, RedisDatastore, RedisStoreSettings
from projections.forensics import ExplainerCache
from projections.forensics_projection import ForensicsProjection
from projections.migrate import apply_migrations
from projections.read_models import ArchiveProjection, DecisionsProjection
from projections.worker import Projection, ProjectionWorker, WorkerSettings
from tests.backbone.relay_support import feature_names, log_size, relay_until_caught_up
from tests.process_report import LoggedProcess, wait_until


def count(database_url: str, schema: str, query: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql.SQL(query).format(s=sql.Identifier(schema))).fetchone()[0]


def run_workers(workers: list[ProjectionWorker], done, timeout: float = 300.0) -> None:
    async def drive() -> None:
        for w in workers:
            await w.start()
        try:
            deadline = time.monotonic() + timeout
            while not done():
                assert time.monotonic() < deadline, f"workers did not finish: {[w.metrics for w in workers]}"
                for w in workers:
                    await w.step()
        finally:
            for w in workers:
                await w.stop()

    run_coroutine(drive())


def workers_for(projections: list[Projection], servers, database_url, schema, topics) -> list[ProjectionWorker]:
    return [
        ProjectionWorker(p, servers, database_url, schema, topics, WorkerSettings(max_retries=2, backoff_base=0.01))
        for p in projections
    ]


@pytest.fixture
def migrated(database_url: str, schema: str) -> str:
    apply_migrations(database_url, schema)
    return schema


def test_every_decision_gets_exactly_one_forensics_row_and_the_read_models_match(
    redis_url, store, kafka_servers, topic_settings, database_url, migrated, model_registry
):
    schema = migrated
    head = log_size(redis_url, store)
    relay_until_caught_up(Relay(redis_url, store, kafka_servers, topic_settings, feature_names))
    projections = [ArchiveProjection(), DecisionsProjection(), ForensicsProjection(ExplainerCache(model_registry))]
    workers = workers_for(projections, kafka_servers, database_url, schema, topic_settings)

    def done() -> bool:
        return (
            count(database_url, schema, "SELECT count(*) FROM {s}.event_archive") == head
            and count(database_url, schema, "SELECT count(*) FROM {s}.forensics") == 300
            and count(database_url, schema, "SELECT count(*) FROM {s}.decisions") == 300
        )

    run_workers(workers, done)
    # The workers' sessions compress with lz4 (this PostgreSQL has it): no large value pglz-compressed.
    compressed = ("SELECT count(*) FROM (SELECT pg_column_compression(payload) AS m FROM {s}.event_archive"
                  " UNION ALL SELECT pg_column_compression(shap_values) FROM {s}.forensics) AS c WHERE m = ")
    assert count(database_url, schema, compressed + "'pglz'") == 0
    assert count(database_url, schema, compressed + "'lz4'") > 0
    fills = count(database_url, schema, "SELECT count(*) FROM {s}.event_archive WHERE event_type = 'Trading.Order.Filled.v2'")
    assert fills > 0
    assert count(database_url, schema, "SELECT count(*) FROM {s}.decisions WHERE fill IS NOT NULL") == fills
    assert count(database_url, schema, "SELECT count(*) FROM {s}.forensics WHERE fill IS NOT NULL") == fills
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(sql.SQL(
            "SELECT f.expected_value, f.model_output, f.shap_values, (a.payload->'trading_decision'->>'score')::float8"
            " FROM {s}.forensics f JOIN {s}.event_archive a"
            " ON a.payload->'trading_decision'->>'decision_id' = f.decision_id::text"
        ).format(s=sql.Identifier(schema))).fetchall()
        assert len(rows) == 300
        for expected, output, shap_values, score in rows:
            assert expected + sum(shap_values.values()) == pytest.approx(output, abs=1e-9)
            assert abs(output - score) < 1e-6
        positions = dict(conn.execute(sql.SQL("SELECT symbol, quantity FROM {s}.positions").format(s=sql.Identifier(schema))).fetchall())
        last_fill = dict(conn.execute(sql.SQL(
            "SELECT DISTINCT ON (symbol) symbol, (payload->'payload'->>'position_after')::float8 FROM {s}.event_archive"
            " WHERE event_type = 'Trading.Order.Filled.v2' ORDER BY symbol, log_position DESC"
        ).format(s=sql.Identifier(schema))).fetchall())
        assert positions == pytest.approx({s: last_fill.get(s, 0.0) for s in positions})

    # Everything again (a broker that lost its data, or a re-publish on demand): no row twice,
    # and no decision explained again (already_written finds every one).
    again = Relay(redis_url, store, kafka_servers, topic_settings, feature_names, RelaySettings(pack_max_events=1))
    again.position.set(0)
    relay_until_caught_up(again)
    per_topic = messages_per_topic(database_url, schema)
    forensics = CountingForensics(ExplainerCache(model_registry))
    workers = workers_for([*projections[:2], forensics], kafka_servers, database_url, schema, topic_settings)
    expected = [sum(per_topic[t] for t in w.projection.topics) for w in workers]
    run_workers(workers, lambda: all(w.metrics.messages_total >= n for w, n in zip(workers, expected)))
    assert [w.metrics.messages_total for w in workers] == expected  # exactly the re-sent ones, from stored offsets
    assert count(database_url, schema, "SELECT count(*) FROM {s}.event_archive") == head
    assert count(database_url, schema, "SELECT count(*) FROM {s}.forensics") == 300
    assert count(database_url, schema, "SELECT count(*) FROM {s}.decisions") == 300
    assert forensics.explained == 0


class CountingForensics(ForensicsProjection):
    """The forensics projection, counting the decisions it explains."""

    explained = 0

    def prepare(self, envelopes):
        records = super().prepare(envelopes)
        self.explained += sum(1 for r in records if r is not None and r.explanation is not None)
        return records


def messages_per_topic(database_url: str, schema: str) -> Counter:
    with psycopg.connect(database_url) as conn:
        types = conn.execute(sql.SQL("SELECT event_type FROM {s}.event_archive").format(s=sql.Identifier(schema))).fetchall()
    return Counter(topic_for(t.rsplit(".v", 1)[0]) for (t,) in types)


def test_poison_messages_go_to_the_dead_letter_topic_with_their_reason_and_the_rest_is_processed(
    redis_url, store, kafka_servers, topic_settings, database_url, migrated, model_registry
):
    schema = migrated
    good = next(iter(_decision_envelopes(redis_url, store, kafka_servers, topic_settings)))
    unknown_model = {**good, "event_id": "00000000-0000-0000-0000-000000000001",
                     "trading_decision": {**good["trading_decision"], "model_version": "0" * 16,
                                          "decision_id": "00000000-0000-0000-0000-000000000002"}}
    # Two records that are retried before they are given up, in one batch: the second one's backoff
    # must not restart the first one's retries (they took turns for ever once).
    unknown_too = {**unknown_model, "event_id": "00000000-0000-0000-0000-000000000003",
                   "trading_decision": {**unknown_model["trading_decision"],
                                        "decision_id": "00000000-0000-0000-0000-000000000004"}}
    poison = [b"{not json", orjson.dumps({**good, "schema_version": 99}), orjson.dumps(unknown_model),
              orjson.dumps(unknown_too)]
    topic = topic_settings.name("trading_decisions")

    run_coroutine(_produce(kafka_servers, topic_settings, topic, [(value, b"AAA", []) for value in poison]))
    relay_until_caught_up(Relay(redis_url, store, kafka_servers, topic_settings, feature_names))
    [worker] = workers_for([ForensicsProjection(ExplainerCache(model_registry))], kafka_servers, database_url, schema, topic_settings)
    run_workers([worker], lambda: count(database_url, schema, "SELECT count(*) FROM {s}.forensics") == 300)
    assert worker.metrics.dead_letter_reasons == {"undecodable": 1, "unknown_schema_version": 1, "unknown_model_version": 2}
    assert worker.metrics.retries_total == 4  # each unknown model version was retried twice before it was given up

    letters = _read_all(kafka_servers, topic_settings.name(dead_letter_topic("forensics")), 4)
    assert [dict(h)["reason"] for _, h in letters] == [b"undecodable", b"unknown_schema_version",
                                                       b"unknown_model_version", b"unknown_model_version"]
    assert [v for v, _ in letters] == poison
    assert all(dict(h)["source"].startswith(topic.encode()) for _, h in letters)


def test_a_corrupt_stored_state_dead_letters_only_its_envelope_of_a_schema_2_pack(
    redis_url, store, kafka_servers, topic_settings, database_url, migrated, model_registry
):
    schema = migrated
    recorder = RedisApplicationRecorder(RedisDatastore(RedisStoreSettings(url=redis_url, key_prefix=store)))
    flat = recorder.read_log_flat(0, 10_000, None)
    entries = [flat[i:i + 5] for i in range(0, len(flat), 5)]
    desk = next(e[1] for e in entries if e[3] == b"Trading.Decision.Taken")
    three = [e for e in entries if e[1] == desk and e[3] == b"Trading.Decision.Taken"][:3]
    three[1] = [*three[1][:4], three[1][4][:40]]  # the middle decision's state cut short: not JSON
    [record] = RecordBuilder(store, feature_names, 100, 1_000_000).build([x for e in three for x in e])
    topic = topic_settings.name("trading_decisions")

    run_coroutine(_produce(kafka_servers, topic_settings, topic, [(record.value, record.key, list(record.headers))]))
    [worker] = workers_for([ForensicsProjection(ExplainerCache(model_registry))], kafka_servers, database_url, schema,
                           topic_settings)
    run_workers([worker], lambda: count(database_url, schema, "SELECT count(*) FROM {s}.forensics") == 2
                and worker.metrics.dead_letter_reasons)
    assert worker.metrics.dead_letter_reasons == {"undecodable": 1}
    [(index, value)] = [tuple(r) for r in psycopg.connect(database_url).execute(sql.SQL(
        "SELECT pack_index, record_value FROM {}.dead_letters").format(sql.Identifier(schema))).fetchall()]
    assert index == 1 and bytes(value).endswith(three[1][4] + b"}")  # the broken line, as it travelled


def _decision_envelopes(redis_url, store, servers, topics: TopicSettings):
    """Decision envelopes of the relay's events, without sending them (a scratch relay prefix), as schema 1 records.

    The relay writes schema 2; read back (``read_envelope``) they are the schema 1 envelopes of the
    same events, which the workers still read (old records), and whose fields these tests vary.
    """
    scratch = TopicSettings(partitions=1, prefix=topics.prefix + "scratch.")
    relay_until_caught_up(Relay(redis_url, store, servers, scratch, feature_names, RelaySettings(name="scratch")))
    for value, _ in _read_all(servers, scratch.name("trading_decisions"), 1):
        for item in unpack(orjson.loads(value)):
            envelope = dict(read_envelope(item))
            if "trading_decision" in envelope:
                yield {**envelope, "schema_version": 1}


def _read_all(servers: str, topic: str, at_least: int) -> list[tuple[bytes, list]]:
    async def read() -> list[tuple[bytes, list]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=f"{topic}.reader",
                                    auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=20)
        await consumer.start()
        found: list[tuple[bytes, list]] = []
        try:
            while len(found) < at_least:
                batch = await consumer.getmany(timeout_ms=5000)
                if not batch:
                    break
                found += [(m.value, list(m.headers)) for ms in batch.values() for m in ms]
        finally:
            await consumer.stop()
        return found

    return run_coroutine(read())


def test_sigkill_of_a_worker_mid_stream_then_restart_gives_every_row_once(
    redis_url, store, kafka_servers, topic_settings, database_url, migrated, tmp_path
):
    schema = migrated
    head = log_size(redis_url, store)
    # One event a record, so the worker's batches of 7 records are 7 events and the log spans many of them.
    relay_until_caught_up(Relay(redis_url, store, kafka_servers, topic_settings, feature_names,
                                RelaySettings(pack_max_events=1)))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_servers, "DATABASE_URL": database_url,
           "GLASSBOX_HOME": str(tmp_path), "KAFKA_PARTITIONS": str(topic_settings.partitions)}
    command = [sys.executable, "-m", "projections.worker_main", "--projection", "archive", "--schema", schema,
               "--topic-prefix", topic_settings.prefix, "--max-records", "7"]
    archived = lambda: count(database_url, schema, "SELECT count(*) FROM {s}.event_archive")  # noqa: E731
    # Kill it mid-stream for certain, not by racing it: the insert of the log's last event waits on an
    # advisory lock this test holds, so the worker is stuck inside an uncommitted batch when it dies.
    with psycopg.connect(database_url, autocommit=True) as gate:
        _stall_insert_of(gate, schema, log_position=head)
        first = LoggedProcess(command, tmp_path / "first.out", env=env)
        try:
            wait_until(lambda: _someone_waits_on(gate, STALL_LOCK), 300, "the worker to reach the last event",
                       first, every=0.01)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        gate.execute(sql.SQL("DROP TRIGGER stall ON {}.event_archive").format(sql.Identifier(schema)))
        gate.execute("SELECT pg_advisory_unlock(%s)", (STALL_LOCK,))
    assert 0 < archived() < head, f"the killed worker should have committed some batches, not all\n{first.report()}"

    second = LoggedProcess(command, tmp_path / "second.out", env=env)
    try:
        wait_until(lambda: archived() >= head, 300, f"the restarted worker to archive all {head} events", second)
        time.sleep(1.0)  # anything still to come would be a duplicate
    finally:
        second.stop(120)  # SIGTERM; SIGKILL (a failure below) if it has not stopped 120 s later
    assert second.returncode == 0, second.report()
    assert archived() == head, second.report()
    assert count(database_url, schema, "SELECT count(DISTINCT log_position) FROM {s}.event_archive") == head


def test_seeking_to_stored_offsets_during_a_batch_waits_for_its_transaction(
    redis_url, store, kafka_servers, topic_settings, database_url, migrated
):
    # A rebalance runs the worker's listener (seek_to_stored) in aiokafka's coordinator task, while
    # step() may be inside its transaction on the same connection; on a slow database that is likely.
    # Both must finish, the batch committed once.
    schema = migrated
    head = log_size(redis_url, store)
    relay_until_caught_up(Relay(redis_url, store, kafka_servers, topic_settings, feature_names,
                                RelaySettings(pack_max_events=1)))
    [worker] = workers_for([ArchiveProjection()], kafka_servers, database_url, schema, topic_settings)
    archived = lambda: count(database_url, schema, "SELECT count(*) FROM {s}.event_archive")  # noqa: E731
    partitions = [TopicPartition(topic_settings.name(t), p) for t in ArchiveProjection.topics
                  for p in range(topic_settings.partitions)]

    async def drive(gate: psycopg.Connection) -> None:
        await worker.start()
        try:
            async def step_until_archived() -> None:
                while await asyncio.to_thread(archived) < head:
                    await worker.step()

            stepping = asyncio.ensure_future(step_until_archived())
            deadline = time.monotonic() + 300
            while not await asyncio.to_thread(_someone_waits_on, gate, STALL_LOCK):  # stuck in its transaction
                assert not stepping.done() and time.monotonic() < deadline, f"{await asyncio.to_thread(archived)} of {head}"
                await asyncio.sleep(0.05)
            seeking = asyncio.ensure_future(worker.seek_to_stored(partitions))  # as the listener does
            await asyncio.sleep(0.5)
            await asyncio.to_thread(gate.execute, "SELECT pg_advisory_unlock(%s)", (STALL_LOCK,))
            await asyncio.wait_for(asyncio.gather(stepping, seeking), 300)
        finally:
            await worker.stop()

    with psycopg.connect(database_url, autocommit=True) as gate:
        _stall_insert_of(gate, schema, log_position=head)
        run_coroutine(drive(gate))
    assert archived() == head
    assert count(database_url, schema, "SELECT count(DISTINCT log_position) FROM {s}.event_archive") == head


STALL_LOCK = 4242


def _stall_insert_of(gate: psycopg.Connection, schema: str, log_position: int) -> None:
    """Make any insert of the archive row at ``log_position`` wait until ``gate`` releases STALL_LOCK."""
    gate.execute("SELECT pg_advisory_lock(%s)", (STALL_LOCK,))
    s = sql.Identifier(schema)
    gate.execute(sql.SQL(
        "CREATE FUNCTION {}.stall() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_advisory_xact_lock({}); RETURN NEW; END $$"
    ).format(s, sql.Literal(STALL_LOCK)))
    gate.execute(sql.SQL(
        "CREATE TRIGGER stall BEFORE INSERT ON {s}.event_archive FOR EACH ROW"
        " WHEN (NEW.log_position = {p}) EXECUTE FUNCTION {s}.stall()"
    ).format(s=s, p=sql.Literal(log_position)))


def _someone_waits_on(gate: psycopg.Connection, lock: int) -> bool:
    return gate.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND NOT granted", (lock,)
    ).fetchone()[0] > 0


async def _produce(kafka_servers: str, topic_settings, topic: str, records: list[tuple[bytes, bytes, list]]) -> None:
    """``records`` (value, key, headers) sent to ``topic`` one by one, the forensics topics created first."""
    await ensure_topics(kafka_servers, glassbox_topics(topic_settings, ["forensics"]))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_servers, acks="all")
    await producer.start()
    try:
        for value, key, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()
