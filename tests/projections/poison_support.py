"""Helpers of the poison-record tests: hand-made envelopes, a worker in a thread, reading the ledger back."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaProducer
from psycopg import sql

from backbone.broker import run_coroutine
from backbone.envelope import StoredNotification, envelope_record
from backbone.topics import TopicSettings, ensure_topics, glassbox_topics
from projections.worker import ProjectionWorker


def archive_envelope(position: int) -> dict[str, Any]:
    """A real envelope (backbone.envelope) of a non-decision event, as the relay would send it."""
    record = envelope_record(
        StoredNotification(position, uuid.uuid4(), 1, "Trading.Desk.Opened",
                           {"symbol": "AAA", "timestamp_ns": 1_700_000_000_000_000_000 + position}),
        "test-store", lambda version: [])
    return orjson.loads(record.value)


def produce(servers: str, topics: TopicSettings, groups: list[str], topic: str,
            values: list[bytes]) -> list[tuple[int, int]]:
    """Send ``values`` to ``topic`` (keyed alike, so in order); their (partition, offset)."""
    async def send() -> list[tuple[int, int]]:
        await ensure_topics(servers, glassbox_topics(topics, groups))
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
        await producer.start()
        try:
            placed = []
            for value in values:
                metadata = await producer.send_and_wait(topic, value, key=b"AAA")
                placed.append((metadata.partition, metadata.offset))
            return placed
        finally:
            await producer.stop()

    return run_coroutine(send())


class WorkerThread:
    """A ProjectionWorker stepping in its own thread and event loop until stopped."""

    def __init__(self, worker: ProjectionWorker) -> None:
        self.worker = worker
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        async def loop() -> None:
            await self.worker.start()
            try:
                while not self._stop.is_set():
                    await self.worker.step()
            finally:
                await self.worker.stop()

        try:
            asyncio.run(loop())
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.errors.append(error)

    def alive(self) -> bool:
        return self._thread.is_alive() and not self.errors

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)


def consumed(database_url: str, schema: str, group: str, topic: str, placed: list[tuple[int, int]]) -> bool:
    """Whether ``group`` stored offsets past every (partition, offset) in ``placed``."""
    with psycopg.connect(database_url) as conn:
        stored = dict(conn.execute(sql.SQL(
            "SELECT partition, next_offset FROM {}.projection_tracking WHERE consumer_group = %s AND topic = %s"
        ).format(sql.Identifier(schema)), (group, topic)).fetchall())
    return all(stored.get(p, 0) > o for p, o in placed)


def dead_letters(database_url: str, schema: str, group: str) -> list[tuple]:
    """(topic, partition, offset, pack index, reason, published) of the group's dead letters."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql.SQL(
            "SELECT topic, partition, source_offset, pack_index, reason, published_at IS NOT NULL"
            " FROM {}.dead_letters WHERE consumer_group = %s"
        ).format(sql.Identifier(schema)), (group,)).fetchall()


def wait_for(condition, seconds: float, what: str, thread: WorkerThread | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert thread is None or thread.alive(), f"the worker died: {thread.errors}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
