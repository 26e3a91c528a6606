"""Creating Glassbox's topics on the real broker."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from backbone.broker import run_coroutine
from backbone.errors import TopicError
from backbone.topics import (
    EVENT_TOPICS,
    TopicSettings,
    TopicSpec,
    dead_letter_topic,
    ensure_topics,
    glassbox_topics,
)


def _describe(servers: str, names: list[str]) -> dict[str, int]:
    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        finally:
            await admin.close()

    return run_coroutine(describe())


def test_specs_cover_event_topics_and_one_dead_letter_topic_per_group() -> None:
    settings = TopicSettings(partitions=6, replication_factor=3, retention_ms=86_400_000, prefix="bt-1.")
    specs = glassbox_topics(settings, ["forensics", "archive"])
    assert [s.name for s in specs] == [f"bt-1.{t}" for t in EVENT_TOPICS] + ["bt-1.dlq.forensics", "bt-1.dlq.archive"]
    assert {(s.partitions, s.replication_factor, s.configs) for s in specs} == {
        (6, 3, (("retention.ms", "86400000"),))
    }
    assert dead_letter_topic("forensics") == "dlq.forensics"


def test_settings_refuse_nonsense() -> None:
    for bad in (dict(partitions=0), dict(replication_factor=0), dict(retention_ms=-5), dict(prefix="a b")):
        with pytest.raises(ValueError):
            TopicSettings(**bad)


def test_ensure_topics_creates_once_and_is_idempotent(kafka_servers: str, topic_settings: TopicSettings) -> None:
    specs = glassbox_topics(replace(topic_settings, retention_ms=3_600_000), ["forensics"])
    created = run_coroutine(ensure_topics(kafka_servers, specs))
    assert sorted(created) == sorted(s.name for s in specs)
    assert run_coroutine(ensure_topics(kafka_servers, specs)) == []
    assert _describe(kafka_servers, [s.name for s in specs]) == {s.name: 4 for s in specs}


def test_existing_topic_with_too_few_partitions_is_refused(kafka_servers: str, topic_settings: TopicSettings) -> None:
    name = topic_settings.name("small")
    run_coroutine(ensure_topics(kafka_servers, [TopicSpec(name, 2, 1)]))
    with pytest.raises(TopicError, match="has 2 partitions, 8 wanted"):
        run_coroutine(ensure_topics(kafka_servers, [TopicSpec(name, 8, 1)]))


def test_unreachable_broker_is_a_clear_error() -> None:
    with pytest.raises(TopicError, match="could not create topics on 127.0.0.1:1"):
        run_coroutine(ensure_topics("127.0.0.1:1", [TopicSpec("x", 1, 1)], timeout=2))
