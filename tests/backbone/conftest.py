"""Fixtures of the backbone tests: the real Kafka-protocol broker the project starts."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pytest

from backbone.broker import kafka_servers_or_embedded
from backbone.topics import TopicSettings
from edge.feeds import SyntheticFeed
from tests.actors.test_hot_path import make_hot_path, publish, wait_until_decided
from tests.backbone.relay_support import SYMBOLS

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def kafka_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` when set, else an EmbeddedBroker started for the session."""
    with kafka_servers_or_embedded(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), tmp_path_factory.mktemp("broker")
    ) as servers:
        yield servers


@pytest.fixture
def topic_settings() -> TopicSettings:
    """Topic settings with a prefix no other test uses."""
    return TopicSettings(partitions=4, prefix=f"test-{uuid.uuid4().hex[:10]}.")


@pytest.fixture
def store(redis_url: str, namespace: str, policy) -> str:
    """An event store holding the decisions of 2 symbols × 150 ticks; returns its name."""
    hot = make_hot_path(redis_url, namespace, policy, SYMBOLS)
    with hot:
        publish(hot, SyntheticFeed(SYMBOLS, seed=9).ticks(150))
        wait_until_decided(hot, 300)
    return hot.settings.store_name
