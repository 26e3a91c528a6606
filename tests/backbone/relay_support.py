"""Helpers of the backbone tests: an event store with decisions in it, reading topics back."""

from __future__ import annotations

import orjson
import redis
from aiokafka import AIOKafkaConsumer

from actors.features import FEATURE_NAMES
from backbone.broker import run_coroutine
from backbone.envelope import read_envelope, unpack
from backbone.relay import Relay
from backbone.topics import EVENT_TOPICS, TopicSettings


def feature_names(version: str) -> tuple[str, ...]:
    return FEATURE_NAMES


def log_size(redis_url: str, store: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        return int(client.get(f"{{{store}}}:seq"))


def consume_all(servers: str, topics: TopicSettings, expected: int, timeout_ms: int = 5000) -> list[dict]:
    async def consume() -> list[dict]:
        consumer = AIOKafkaConsumer(
            *(topics.name(t) for t in EVENT_TOPICS), bootstrap_servers=servers,
            group_id=f"{topics.prefix}check", enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=20,
        )
        await consumer.start()
        found: list[dict] = []
        try:
            while len(found) < expected:
                batch = await consumer.getmany(timeout_ms=timeout_ms)
                if not batch:
                    break
                for messages in batch.values():
                    for m in messages:
                        for item in unpack(orjson.loads(m.value)):
                            envelope = dict(read_envelope(item))  # as every consumer reads it
                            envelope["_headers"] = dict(m.headers)
                            envelope["_key"] = m.key
                            envelope["_topic"] = m.topic
                            found.append(envelope)
            extra = await consumer.getmany(timeout_ms=300)  # nothing beyond what was expected
            found.extend(e for ms in extra.values() for m in ms for e in unpack(orjson.loads(m.value)))
        finally:
            await consumer.stop()
        return found

    return run_coroutine(consume())


def relay_until_caught_up(relay: Relay) -> int:
    async def drive() -> int:
        total = 0
        try:
            while True:
                done = await relay.step()
                if not done and relay.metrics.lag == 0:
                    return total
                total += done
        finally:
            await relay.close()

    return run_coroutine(drive())
