"""What the backbone benchmarks share: the three services, and an event store full of decisions.

Each benchmark starts the embedded Redis, broker and PostgreSQL (or uses the
URLs in the environment) in a temporary directory, and gets a unique
namespace, schema and topic prefix, so runs never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from actors.system.layout import BACKBONE_NICENESS
from actors.system.training import train_specialists
from aggregates.registry import ModelRegistry
from backbone.broker import BrokerSettings, EmbeddedBroker
from backbone.topics import TopicSettings
from edge.child_process import child_setup
from edge.embedded_server import given_or_embedded
from edge.feeds import SyntheticFeed
from edge.redis_server import EmbeddedRedis
from edge.store_layout import log_head
from edge.tick_stream import TickPublisher
from glassbox import Settings
from projections.migrate import apply_migrations
from projections.postgres_server import EmbeddedPostgres, PostgresServerSettings

__all__ = ["Services", "backbone_processes", "fill_store", "running_services"]


@dataclass(frozen=True)
class Services:
    """URLs of the running services plus this run's own names."""

    redis_url: str
    kafka_servers: str
    database_url: str
    namespace: str
    schema: str
    topics: TopicSettings
    home: Path
    """A GLASSBOX_HOME whose ``models`` folder holds the deployed model (for worker processes)."""

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.home / "models")


@contextmanager
def running_services(partitions: int = 8, kafka_servers: str | None = None,
                     settings: Settings | None = None) -> Iterator[Services]:
    """Start (or attach to) Redis, the broker and PostgreSQL; migrate a fresh schema.

    ``kafka_servers`` overrides the environment (a benchmark that pauses its own broker);
    ``settings`` the environment's settings (a benchmark that trained its model once for many runs).
    """
    settings = settings or Settings.from_env()
    run = uuid.uuid4().hex[:8]
    with ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="glassbox-perf-"))
        tmp.chmod(0o711)  # the postgres user must pass through when we run as root
        stack.callback(shutil.rmtree, tmp, True)
        redis_url = stack.enter_context(given_or_embedded(settings.redis_url, EmbeddedRedis(tmp / "redis")))
        servers = stack.enter_context(
            given_or_embedded(kafka_servers or settings.kafka_bootstrap_servers,
                              EmbeddedBroker(tmp / "broker", BrokerSettings(niceness=BACKBONE_NICENESS))))
        database_url = stack.enter_context(given_or_embedded(settings.database_url, EmbeddedPostgres(
            tmp / "postgres", PostgresServerSettings(niceness=BACKBONE_NICENESS))))
        schema = f"perf_{run}"
        apply_migrations(database_url, schema)
        home = settings.home
        if ModelRegistry(settings.model_dir).latest() is None:
            home = tmp / "home"
            train_specialists(ModelRegistry(home / "models"))
        yield Services(
            redis_url, servers, database_url, f"perf-{run}:", schema,
            TopicSettings(partitions=partitions, prefix=f"perf-{run}."), home,
        )


@contextmanager
def backbone_processes(services: Services, store: str, topic_prefix: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The relay of ``store`` and one forensics worker, each its own process as in production."""
    env = {**os.environ, "REDIS_URL": services.redis_url, "KAFKA_BOOTSTRAP_SERVERS": services.kafka_servers,
           "DATABASE_URL": services.database_url, "GLASSBOX_HOME": str(services.home)}
    commands = [
        [sys.executable, "-m", "backbone.relay_main", "--store", store, "--topic-prefix", topic_prefix],
        [sys.executable, "-m", "projections.worker_main", "--projection", "forensics", "--schema", services.schema,
         "--topic-prefix", topic_prefix],
    ]
    # Below the hot path's CPU priority, as the supervisor runs them: a backlog's catch-up
    # must not take the cores the deciding needs.
    processes = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, preexec_fn=child_setup(BACKBONE_NICENESS))
                 for c in commands]
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def fill_store(services: Services, symbols: int, ticks_per_symbol: int, name: str = "fill") -> tuple[str, int]:
    """Decide ``symbols × ticks_per_symbol`` synthetic ticks into a fresh store; (store name, events)."""
    names = SyntheticFeed.symbol_names(symbols)
    namespace = f"{services.namespace}{name}:"
    version = services.registry.latest()
    assert version is not None
    from aggregates.policy import DecisionPolicy

    hot = HotPath(HotPathSettings(services.redis_url, namespace=namespace, shard=ShardSettings()), names,
                  DecisionPolicy(services.registry.load(version)))
    publisher = TickPublisher(hot.client, hot.keys, names)
    ticks = list(SyntheticFeed(names, seed=5).ticks(ticks_per_symbol))
    for i in range(0, len(ticks), 5_000):
        publisher.publish(ticks[i:i + 5_000], stamp=False)
    with hot:
        while hot.stats.snapshot().ticks < len(ticks):
            time.sleep(0.05)
        hot.shard.idle(10)
        events = log_head(hot.client, hot.settings.store_name)
    return hot.settings.store_name, events
