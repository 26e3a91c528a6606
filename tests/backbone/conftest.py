"""Fixtures of the backbone tests: the real Kafka-protocol broker the project starts."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pytest

from backbone.broker import kafka_servers_or_embedded
from backbone.topics import TopicSettings

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
