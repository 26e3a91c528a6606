"""Fixtures shared by every test package: the real services the project starts."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pytest
import redis

from actors.training import train_specialists
from aggregates.policy import DecisionPolicy
from aggregates.registry import ModelRegistry
from edge.redis_server import redis_url_or_embedded

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``REDIS_URL`` when set, else an EmbeddedRedis started for the whole session."""
    data_dir = tmp_path_factory.mktemp("redis")
    with redis_url_or_embedded(os.environ.get("REDIS_URL"), data_dir) as url:
        yield url


@pytest.fixture
def key_prefix() -> str:
    """A Redis key prefix (store name) no other test uses."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def model_registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """A registry holding specialists trained on the bundled bars, as `glassbox train` does."""
    registry = ModelRegistry(tmp_path_factory.mktemp("models"))
    train_specialists(registry, seed=7)
    return registry


@pytest.fixture(scope="session")
def policy(model_registry: ModelRegistry) -> DecisionPolicy:
    """The default regime-blend policy over the trained specialists."""
    version = model_registry.latest()
    assert version is not None
    return DecisionPolicy(model_registry.load(version))


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A key prefix for tick streams and event stores; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    with redis.Redis.from_url(redis_url) as client:
        for pattern in (f"{prefix}*", f"{{{prefix}*"):
            for key in client.scan_iter(match=pattern):
                client.delete(key)
