"""Price alerts end to end: committed with the decision, relayed to risk_alerts, archived, served (real services)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

import psycopg
import pytest
from psycopg import sql
from starlette.testclient import TestClient

from actors.desk_actor import ActorSettings
from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from aggregates.alerts import AlertRule, AlertRules
from aggregates.desk import SymbolDesk
from api.app import ApiConfig, create_app
from api.auth import ApiTokens
from backbone.envelope import topic_for
from backbone.relay import Relay
from backbone.topics import TopicSettings
from edge.feeds import SyntheticFeed
from projections.lag import EndOffsets
from projections.migrate import apply_migrations
from projections.read_models import ArchiveProjection
from tests.actors.hot_path_support import publish, wait_until_decided
from tests.backbone.relay_support import feature_names, relay_until_caught_up
from tests.projections.test_workers import count, run_workers, workers_for

SYMBOLS = SyntheticFeed.symbol_names(2)
READER = "alerts-reader-0123456789"
AUTH = {"Authorization": f"Bearer {READER}"}


@pytest.fixture(scope="module")
def alerted(redis_url, kafka_servers, database_url, policy):
    namespace, schema = f"alerts-{uuid.uuid4().hex[:8]}:", f"alerts_{uuid.uuid4().hex[:10]}"
    topics = TopicSettings(partitions=2, prefix=f"alerts-{uuid.uuid4().hex[:8]}.")
    actor = ActorSettings(alerts=AlertRules(AlertRule(0.004, 1.0)))
    hot = HotPath(HotPathSettings(redis_url, namespace=namespace, shard=ShardSettings(actor=actor)), SYMBOLS, policy)
    with hot:
        publish(hot, SyntheticFeed(SYMBOLS, seed=9).ticks(600))
        wait_until_decided(hot, 1_200)
        recorded = [hot.app.mapper.to_domain_event(n) for n in hot.app.recorder.select_notifications(1, 10**6)]
    alerts = [e for e in recorded if isinstance(e, SymbolDesk.AlertTriggered)]
    assert len(alerts) > 5
    apply_migrations(database_url, schema)
    relay_until_caught_up(Relay(redis_url, hot.settings.store_name, kafka_servers, topics, feature_names))
    run_workers(workers_for([ArchiveProjection()], kafka_servers, database_url, schema, topics),
                lambda: count(database_url, schema, "SELECT count(*) FROM {s}.event_archive") == len(recorded))
    app = create_app(ApiConfig(database_url, ApiTokens.parse(f"{READER}:portfolio:read"), schema=schema))
    with TestClient(app) as client:
        yield client, alerts, database_url, schema, topics, kafka_servers
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_every_alert_is_relayed_to_risk_alerts_archived_and_served_in_time_order(alerted) -> None:
    client, alerts, database_url, schema, topics, kafka_servers = alerted
    served, cursor = [], None
    while True:
        page = client.get("/api/v1/alerts", params={"limit": 4, **({"cursor": cursor} if cursor else {})},
                          headers=AUTH).json()
        served += page["alerts"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(served) == len(alerts)
    expected = sorted(alerts, key=lambda a: (a.timestamp_ns, a.symbol))
    assert [(s["symbol"], s["move"], s["severity"], s["correlation_id"]) for s in sorted(
        served, key=lambda s: (s["at"], s["symbol"]))] == [(a.symbol, a.move, a.severity, a.correlation_id)
                                                            for a in expected]
    assert [s["at"] for s in served] == sorted(s["at"] for s in served)
    first = served[0]
    assert set(first) >= {"alert_id", "at", "symbol", "move", "window_s", "threshold", "severity", "exposure",
                          "exposure_fraction", "position", "price", "reference_price"}
    # Relayed to their own topic, which only alerts go to.
    assert topic_for("Risk.Alert.Triggered") == "risk_alerts"

    async def records_in(topic: str) -> int:
        async with EndOffsets(kafka_servers) as offsets:
            return sum((await offsets.read([topics.name(topic)])).values())

    assert asyncio.run(records_in("risk_alerts")) > 0


def test_alerts_filter_by_symbol_and_since_and_bad_parameters_are_refused(alerted) -> None:
    client, alerts, *_ = alerted
    mine = client.get("/api/v1/alerts", params={"symbol": SYMBOLS[1], "limit": 1000}, headers=AUTH).json()["alerts"]
    assert len(mine) == sum(a.symbol == SYMBOLS[1] for a in alerts) and {a["symbol"] for a in mine} <= {SYMBOLS[1]}
    middle = sorted(a.timestamp_ns for a in alerts)[len(alerts) // 2]
    since = datetime.fromtimestamp(middle / 1e9, tz=timezone.utc).isoformat()
    later = client.get("/api/v1/alerts", params={"since": since, "limit": 1000}, headers=AUTH).json()["alerts"]
    assert len(later) == sum(a.timestamp_ns >= middle // 1000 * 1000 for a in alerts)
    for params, code in [({"since": "yesterday"}, "invalid_since"), ({"limit": "0"}, "invalid_limit"),
                         ({"cursor": "nope"}, "invalid_cursor"), ({"sym": "x"}, "unknown_parameter")]:
        answer = client.get("/api/v1/alerts", params=params, headers=AUTH)
        assert answer.status_code in (400, 422) and answer.json()["error"] == code
