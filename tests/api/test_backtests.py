"""``GET /api/v1/backtests`` against the real Redis holding runs recorded as ``glassbox backtest`` records them."""

from __future__ import annotations

import uuid

import pytest
import redis
from starlette.testclient import TestClient

from api.app import ApiConfig, create_app
from edge.store_layout import StoreKeys
from edge.system_keys import SystemKeys
from tests.api.backtest_records import record_runs
from tests.api.test_app import AUTH, TOKENS


@pytest.fixture
def store(redis_url: str):
    name = SystemKeys(f"bt-{uuid.uuid4().hex[:8]}:").backtests_store
    yield name
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(match=f"{StoreKeys(name).tag}*"):
            client.delete(key)


def test_runs_are_listed_newest_first_and_an_unreadable_record_is_counted_not_served(
        projected, redis_url, store) -> None:
    record_runs(redis_url, store, ["first", "second", "third"])
    with redis.Redis.from_url(redis_url) as client:  # a record no run could have left
        client.xadd(StoreKeys(store).log, {"t": "Backtest.Run.Completed", "s": b"\xff not json"})
    app = create_app(ApiConfig(projected.database_url, TOKENS, schema=projected.schema, redis_url=redis_url,
                               backtests_store=store))
    with TestClient(app) as client:
        body = client.get("/api/v1/backtests", headers=AUTH).json()
        assert [r["run_id"] for r in body["backtests"]] == ["third", "second", "first"]
        assert body["unreadable"] == 1
        newest = body["backtests"][0]
        assert newest["strategy"] == "sma-cross" and newest["source"] == "bundled:GOOG"
        assert newest["metrics"]["sharpe_ratio"] == 2.8 and newest["orders_cut_by_risk"] == 3
        two = client.get("/api/v1/backtests", params={"limit": 2}, headers=AUTH).json()["backtests"]
        assert [r["run_id"] for r in two] == ["third", "second"]
        bad = client.get("/api/v1/backtests", params={"limit": "0"}, headers=AUTH)
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_limit"
        assert client.get("/api/v1/backtests").status_code == 401


def test_without_redis_the_route_says_what_is_missing(projected) -> None:
    with TestClient(create_app(ApiConfig(projected.database_url, TOKENS, schema=projected.schema))) as client:
        answer = client.get("/api/v1/backtests", headers=AUTH)
        assert answer.status_code == 503 and answer.json()["error"] == "no_backtest_store"
