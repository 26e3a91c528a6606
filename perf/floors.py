"""What the tools allow on this machine, for ``perf.pipeline``'s per-stage ratios.

Each floor does a stage's bare work with the same tool on the same data
and reports its CPU µs per unit (the client's ``process_time`` plus the
server's CPU from ``/proc``):

- the hop: XADD → XREADGROUP → one Lua append (``perf.hotpath``'s floor);
- producing: aiokafka sending the very records a run relayed, with the relay's
  producer settings (acks=all), to a fresh topic;
- explaining: ``shap.TreeExplainer`` alone (``perf.forensics``'s floor);
- writing: one binary COPY of the forensics rows a run wrote into a bare table.
"""

from __future__ import annotations

import asyncio
import resource
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from psycopg import sql

from backbone.broker import run_coroutine
from backbone.relay import RelaySettings
from backbone.topics import EVENT_TOPICS, TopicSpec, ensure_topics
from perf.hotpath import floor_cycles
from perf.services import Services

__all__ = ["Floor", "copy_floor", "hop_floor", "produce_floor"]


@dataclass(frozen=True)
class Floor:
    """One floor: units done, their rate, CPU µs each and (for the hop) latency percentiles."""

    units: int
    per_s: float
    cpu_us: float
    latency_us_p50: float = 0.0
    latency_us_p99: float = 0.0


def hop_floor(services: Services, symbols: list[str], rate: float, seconds: float, event_bytes: int,
              redis_cpu: Callable[[], float]) -> Floor:
    """``perf.hotpath``'s floor at ``rate``: its consumer (here), producer process and Redis CPU per tick."""
    from actors.stats import percentiles_us

    cpu, children, redis_before = time.process_time(), _children_cpu(), redis_cpu()
    started = time.perf_counter()
    _, latencies = floor_cycles(services.redis_url, symbols, rate, seconds, event_bytes)
    wall = time.perf_counter() - started
    spent = time.process_time() - cpu + _children_cpu() - children + redis_cpu() - redis_before
    p50, p99 = percentiles_us(latencies, (50, 99))
    n = max(len(latencies), 1)
    return Floor(len(latencies), len(latencies) / wall, spent * 1e6 / n, p50, p99)


def produce_floor(services: Services, topic_prefix: str, records: int, broker_cpu: Callable[[], float]) -> Floor:
    """Read up to ``records`` records a run relayed (all event topics), then time producing them again."""
    taken = run_coroutine(_records(services.kafka_servers, [topic_prefix + t for t in EVENT_TOPICS], records))
    if not taken:
        raise RuntimeError(f"no records under topic prefix {topic_prefix!r} to produce again: did the run relay any?")
    topic = f"{topic_prefix}floor.produce.{uuid.uuid4().hex[:6]}"
    settings = RelaySettings()

    async def produce() -> float:
        await ensure_topics(services.kafka_servers, [TopicSpec(topic, services.topics.partitions, 1)])
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_servers, acks="all", enable_idempotence=False,
                                    linger_ms=settings.linger_ms, max_batch_size=settings.max_batch_bytes,
                                    compression_type=settings.compression)
        await producer.start()
        try:
            cpu, broker = time.process_time(), broker_cpu()
            started = time.perf_counter()
            for i in range(0, len(taken), settings.batch_size):  # as the relay sends: a batch, then its acks
                futures = [await producer.send(topic, value, key=key, headers=headers)
                           for key, value, headers in taken[i:i + settings.batch_size]]
                await asyncio.gather(*futures)
            wall = time.perf_counter() - started
            return wall, time.process_time() - cpu + broker_cpu() - broker
        finally:
            await producer.stop()

    wall, spent = run_coroutine(produce())
    return Floor(len(taken), len(taken) / wall, spent * 1e6 / len(taken))


async def _records(servers: str, topics: list[str], limit: int) -> list[tuple[bytes | None, bytes, list]]:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=servers, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    taken: list[tuple[bytes | None, bytes, list]] = []
    try:
        idle = 0
        while len(taken) < limit and idle < 3:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5_000)
            idle = 0 if batches else idle + 1
            for messages in batches.values():
                taken += [(m.key, m.value, list(m.headers)) for m in messages]
    finally:
        await consumer.stop()
    return taken[:limit]


def copy_floor(services: Services, schema: str, postgres_cpu: Callable[[], float]) -> Floor:
    """One binary COPY of every forensics row of ``schema`` into a bare table (columns only, no index)."""
    source = sql.Identifier(schema, "forensics")
    target = sql.Identifier(schema, f"floor_copy_{uuid.uuid4().hex[:6]}")
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(target, source))
        data = bytearray()
        with conn.cursor().copy(sql.SQL("COPY (SELECT * FROM {}) TO STDOUT (FORMAT binary)").format(source)) as copy:
            for chunk in copy:
                data += chunk
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(source)).fetchone()[0]
        if not rows:
            raise RuntimeError(f"no forensics rows in schema {schema} to copy: did the run explain any?")
        cpu, server = time.process_time(), postgres_cpu()
        started = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(target)) as copy:
            for i in range(0, len(data), 1 << 20):
                copy.write(data[i:i + (1 << 20)])
        wall = time.perf_counter() - started
        spent = time.process_time() - cpu + postgres_cpu() - server
        conn.execute(sql.SQL("DROP TABLE {}").format(target))
    return Floor(rows, rows / wall, spent * 1e6 / rows)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
