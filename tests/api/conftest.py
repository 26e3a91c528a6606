"""A read-model schema filled by the real pipeline (hot path → relay → broker → workers), once per session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import pytest
import redis
from psycopg import sql

from backbone.relay import Relay
from backbone.topics import TopicSettings
from edge.feeds import SyntheticFeed
from projections.forensics import ExplainerCache
from projections.forensics_projection import ForensicsProjection
from projections.migrate import apply_migrations
from projections.read_models import ArchiveProjection, DecisionsProjection
from tests.actors.hot_path_support import (
    STORE_SYMBOLS,
    make_hot_path,
    publish,
    wait_until_decided,
)
from tests.backbone.relay_support import feature_names, relay_until_caught_up
from tests.projections.test_workers import count, run_workers, workers_for


@dataclass(frozen=True)
class Projected:
    database_url: str
    schema: str
    redis_url: str
    store: str
    kafka_servers: str
    topics: TopicSettings


@pytest.fixture(scope="session")
def projected(redis_url, kafka_servers, database_url, policy, model_registry) -> Projected:
    namespace = f"api-{uuid.uuid4().hex[:8]}:"
    schema = f"api_{uuid.uuid4().hex[:12]}"
    topics = TopicSettings(partitions=4, prefix=f"api-{uuid.uuid4().hex[:8]}.")
    hot = make_hot_path(redis_url, namespace, policy, STORE_SYMBOLS)
    with hot:
        publish(hot, SyntheticFeed(STORE_SYMBOLS, seed=13).ticks(150))
        wait_until_decided(hot, 300)
    store = hot.settings.store_name
    apply_migrations(database_url, schema)
    relay_until_caught_up(Relay(redis_url, store, kafka_servers, topics, feature_names))
    projections = [ArchiveProjection(), DecisionsProjection(), ForensicsProjection(ExplainerCache(model_registry))]
    run_workers(
        workers_for(projections, kafka_servers, database_url, schema, topics),
        lambda: count(database_url, schema, "SELECT count(*) FROM {s}.forensics") == 300
        and count(database_url, schema, "SELECT count(*) FROM {s}.decisions") == 300,
    )
    yield Projected(database_url, schema, redis_url, store, kafka_servers, topics)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    with redis.Redis.from_url(redis_url) as client:
        for pattern in (f"{namespace}*", f"{{{namespace}*"):
            for key in client.scan_iter(match=pattern):
                client.delete(key)
