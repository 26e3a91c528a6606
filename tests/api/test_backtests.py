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


def test_one_run_is_served_with_its_report_and_every_refusal_says_why(projected, redis_url, store, tmp_path) -> None:
    import orjson
    from eventsourcing.application import Application

    from actors.application import event_store_env
    from aggregates.backtest_run import BacktestRun

    record_runs(redis_url, store, ["old-record"])  # recorded without a report's whereabouts (as v1 runs were)
    report = {"report_format": 2, "metrics": {"total_return": 0.1}, "trades": []}
    (tmp_path / "report.json").write_bytes(orjson.dumps(report))
    recorder = Application(env=event_store_env(redis_url, store))
    try:
        recorder.save(BacktestRun.completed("with-report", {"strategy": {"name": "sma-cross"}}, {}, "", {}, {},
                                            {"json": str(tmp_path / "report.json")}))
        recorder.save(BacktestRun.completed("elsewhere", {"strategy": {"name": "sma-cross"}}, {}, "", {}, {},
                                            {"json": "/etc/passwd"}))
    finally:
        recorder.close()
    app = create_app(ApiConfig(projected.database_url, TOKENS, schema=projected.schema, redis_url=redis_url,
                               backtests_store=store))
    with TestClient(app) as client:
        served = client.get("/api/v1/backtests/with-report", headers=AUTH).json()
        assert served["report"] == report and served["run"]["report"] and not served["run"]["forensics"]
        old = client.get("/api/v1/backtests/old-record", headers=AUTH).json()
        assert old["report"] is None and "does not say where its report went" in old["report_problem"]
        assert "not a report.json" in client.get("/api/v1/backtests/elsewhere", headers=AUTH).json()["report_problem"]
        unknown = client.get("/api/v1/backtests/never-ran", headers=AUTH)
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_run"
        bad = client.get("/api/v1/backtests/..%2F..%2Fetc", headers=AUTH)
        assert bad.status_code in (404, 422)
        assert client.get("/api/v1/backtests/a b", headers=AUTH).json()["error"] == "invalid_run"
        decision = "0b7c1a52-5d1e-5e1c-9d7a-3b2f0c4e5a61"
        unexplained = client.get(f"/api/v1/forensics/{decision}", params={"run": "with-report"}, headers=AUTH)
        assert unexplained.status_code == 404 and unexplained.json()["error"] == "no_forensics"
        assert "--forensics" in unexplained.json()["detail"]
        nowhere = client.get(f"/api/v1/forensics/{decision}", params={"run": "never-ran"}, headers=AUTH)
        assert nowhere.status_code == 404 and nowhere.json()["error"] == "unknown_run"
        assert client.get(f"/api/v1/forensics/{decision}", params={"run": "x;drop"},
                          headers=AUTH).json()["error"] == "invalid_run"
