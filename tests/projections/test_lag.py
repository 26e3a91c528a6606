"""Group lags read over a kept connection and Kafka client (the supervisor's probe asks every second)."""

from __future__ import annotations

import asyncio

import psycopg
from aiokafka import AIOKafkaProducer

from backbone.topics import TopicSettings, ensure_topics, glassbox_topics
from projections.groups import PROJECTIONS
from projections.lag import LagReader, group_lags_at
from projections.migrate import apply_migrations


async def _produce(servers: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(topic, b"{}", key=f"k{i}".encode())
    finally:
        await producer.stop()


def test_a_lag_reader_keeps_its_connection_and_reconnects_after_losing_it(
        kafka_servers: str, database_url: str, schema: str, topic_settings: TopicSettings) -> None:
    apply_migrations(database_url, schema)
    decisions = topic_settings.name("trading_decisions")

    async def scenario() -> None:
        await ensure_topics(kafka_servers, glassbox_topics(topic_settings, PROJECTIONS))
        reader = LagReader(database_url, schema, kafka_servers, topic_settings)
        try:
            await _produce(kafka_servers, decisions, 3)
            first = await reader.group_lags()
            assert first.behind["forensics"] == 3 and first.behind["read-models"] == 3
            backend = await _backend_of(reader)

            await _produce(kafka_servers, decisions, 2)
            second = await reader.group_lags()
            assert second.behind["forensics"] == 5
            assert await _backend_of(reader) == backend  # the same connection, not a new one a read

            with psycopg.connect(database_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
            try:
                await reader.group_lags()  # may or may not notice the lost connection on this read
            except psycopg.Error:
                pass
            third = await reader.group_lags()
            assert third.behind["forensics"] == 5
            assert await _backend_of(reader) != backend
            # What a one-off reader (doctor, /metrics) sees agrees with the kept one.
            assert (await group_lags_at(database_url, schema, kafka_servers, topic_settings)) == third
        finally:
            await reader.close()

    asyncio.run(scenario())


async def _backend_of(reader: LagReader) -> int:
    conn = reader._conn  # noqa: SLF001 - which backend the kept connection is, to tell it is kept
    assert conn is not None
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
