"""Fixtures shared by every test package: the real services the project starts."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase
import redis
from psycopg import sql

from actors.system.training import train_specialists
from aggregates.policy import DecisionPolicy
from aggregates.registry import ModelRegistry
from backbone.broker import EmbeddedBroker
from backbone.topics import TopicSettings
from edge.feeds import SyntheticFeed
from edge.embedded_server import given_or_embedded
from edge.redis_server import EmbeddedRedis
from projections.postgres_server import EmbeddedPostgres
from tests.actors.hot_path_support import (
    STORE_SYMBOLS,
    make_hot_path,
    publish,
    wait_until_decided,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

# Property-based tests run against the real services, so each example costs real round trips:
# a bounded number of examples, no per-example deadline (shared machines are noisy), and the
# failing examples kept in the repository (tests/hypothesis-examples) so a found case stays found.
# No shrinking by default: shrinking a stall replays the example dozens of times, each waiting
# out its timeout (a CI run would take hours); GLASSBOX_HYPOTHESIS_SHRINK=1 turns it on locally.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + (
    [Phase.shrink] if os.environ.get("GLASSBOX_HYPOTHESIS_SHRINK") == "1" else [])
settings.register_profile(
    "glassbox",
    max_examples=int(os.environ.get("GLASSBOX_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    phases=_PHASES,
    database=DirectoryBasedExampleDatabase(str(Path(__file__).parent / "hypothesis-examples")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("glassbox")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``REDIS_URL`` when set, else an EmbeddedRedis started for the whole session."""
    data_dir = tmp_path_factory.mktemp("redis")
    with given_or_embedded(os.environ.get("REDIS_URL"), EmbeddedRedis(data_dir)) as url:
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


@pytest.fixture(scope="session")
def kafka_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` when set, else an EmbeddedBroker started for the session."""
    with given_or_embedded(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), EmbeddedBroker(tmp_path_factory.mktemp("broker"))
    ) as servers:
        yield servers


@pytest.fixture
def topic_settings() -> TopicSettings:
    """Topic settings with a prefix no other test uses."""
    return TopicSettings(partitions=4, prefix=f"test-{uuid.uuid4().hex[:10]}.")


@pytest.fixture
def store(redis_url: str, namespace: str, policy) -> str:
    """An event store holding the decisions of 2 symbols × 150 ticks; returns its name."""
    hot = make_hot_path(redis_url, namespace, policy, STORE_SYMBOLS)
    with hot:
        publish(hot, SyntheticFeed(STORE_SYMBOLS, seed=9).ticks(150))
        wait_until_decided(hot, 300)
    return hot.settings.store_name


@contextmanager
def reachable_tmp_dir() -> Iterator[Path]:
    """A temporary directory the unprivileged server user can pass through.

    pytest's own tmp dirs live under a 0700 directory of root's, which the
    ``postgres`` user a root process runs the server as cannot enter.
    """
    path = Path(tempfile.mkdtemp(prefix="glassbox-pg-"))
    path.chmod(0o711)  # enter, not list
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """``DATABASE_URL`` when set, else an EmbeddedPostgres started for the whole session."""
    with reachable_tmp_dir() as root, given_or_embedded(
        os.environ.get("DATABASE_URL"), EmbeddedPostgres(root / "postgres")
    ) as url:
        yield url


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A schema name no other test uses; the schema is dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to the test database, closed afterwards."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection
