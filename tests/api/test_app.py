"""The API against read models the real pipeline built."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from starlette.testclient import TestClient

from api.app import ApiConfig, create_app
from api.auth import ApiTokens
from api.rate_limit import RateLimit

READER = "reader-token-0123456789"
PORTFOLIO_ONLY = "portfolio-token-0123456789"
TOKENS = ApiTokens.parse(f"{READER}:forensics:read,portfolio:read,metrics:read;{PORTFOLIO_ONLY}:portfolio:read")
AUTH = {"Authorization": f"Bearer {READER}"}


def config(projected, **overrides) -> ApiConfig:
    base = dict(
        schema=projected.schema, redis_url=projected.redis_url, kafka_servers=projected.kafka_servers,
        relay_stores=(projected.store,), topics=projected.topics,
    )
    return ApiConfig(projected.database_url, TOKENS, **{**base, **overrides})


@pytest.fixture(scope="module")
def client(projected):
    with TestClient(create_app(config(projected))) as client:
        yield client


def decision_ids(projected) -> list[str]:
    with psycopg.connect(projected.database_url) as conn:
        rows = conn.execute(sql.SQL("SELECT decision_id FROM {}.decisions ORDER BY decided_at, decision_id")
                            .format(sql.Identifier(projected.schema))).fetchall()
    return [str(r[0]) for r in rows]


def test_forensics_of_a_decision_in_the_seeds_shape(client, projected):
    ids = decision_ids(projected)
    assert len(ids) == 300
    body = client.get(f"/api/v1/forensics/{ids[-1]}", headers=AUTH).json()
    assert body["decision_id"] == ids[-1]
    explanations = body["explanations"]
    assert len(explanations["shap_values"]) == 10 and len(explanations["all_shap_values"]) == 20
    assert explanations["expected_value"] + sum(explanations["all_shap_values"].values()) == pytest.approx(
        explanations["model_output"], abs=1e-9
    )
    assert explanations["regime_reasoning"].startswith("Regime probabilities")
    assert {"executed", "execution_price", "slippage"} <= set(body["execution_details"])
    trail = body["audit_trail"]
    assert trail["model_version"] and trail["correlation_id"] and "risk_checks" in trail


def test_executed_decisions_show_their_fill(client, projected):
    with psycopg.connect(projected.database_url) as conn:
        filled = conn.execute(sql.SQL("SELECT decision_id, (fill->>'price')::float8 FROM {}.decisions WHERE fill IS NOT NULL LIMIT 1")
                              .format(sql.Identifier(projected.schema))).fetchone()
    body = client.get(f"/api/v1/forensics/{filled[0]}", headers=AUTH).json()
    assert body["execution_details"]["executed"] is True
    assert body["execution_details"]["execution_price"] == pytest.approx(filled[1])


def test_unknown_malformed_and_pending_decisions(client, projected):
    assert client.get("/api/v1/forensics/00000000-0000-0000-0000-000000000000", headers=AUTH).status_code == 404
    bad = client.get("/api/v1/forensics/not-a-uuid", headers=AUTH)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_decision_id"
    pending_id = decision_ids(projected)[0]
    with psycopg.connect(projected.database_url, autocommit=True) as conn:  # as if forensics had not run yet
        row = conn.execute(sql.SQL("DELETE FROM {}.forensics WHERE decision_id = %s RETURNING *")
                           .format(sql.Identifier(projected.schema)), (pending_id,)).fetchone()
    try:
        pending = client.get(f"/api/v1/forensics/{pending_id}", headers=AUTH)
        assert pending.status_code == 202 and pending.headers["Retry-After"] == "1"
    finally:
        with psycopg.connect(projected.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("INSERT INTO {} VALUES ({})")
                         .format(sql.Identifier(projected.schema, "forensics"), sql.SQL(", ").join(sql.Placeholder() * len(row))),
                         [psycopg.types.json.Jsonb(v) if isinstance(v, (dict, list)) else v for v in row])


def test_decisions_page_through_everything_in_order_and_filter(client, projected):
    seen, cursor = [], None
    while True:
        params = {"limit": 70, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/decisions", params=params, headers=AUTH).json()
        seen += [d["decision_id"] for d in page["decisions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == decision_ids(projected)
    aaa = client.get("/api/v1/decisions", params={"symbol": "AAA", "limit": 1000}, headers=AUTH).json()["decisions"]
    assert len(aaa) == 150 and {d["symbol"] for d in aaa} == {"AAA"}
    first = aaa[0]["decided_at"]
    later = client.get("/api/v1/decisions", params={"symbol": "AAA", "from": first, "limit": 1000}, headers=AUTH).json()
    assert len(later["decisions"]) == 150
    buys = client.get("/api/v1/decisions", params={"symbol": "AAA", "action": "BUY", "limit": 1000},
                      headers=AUTH).json()["decisions"]
    assert buys and [d["decision_id"] for d in buys] == [d["decision_id"] for d in aaa if d["action"] == "BUY"]
    for params, code in (({"limit": 0}, "invalid_limit"), ({"limit": "x"}, "invalid_limit"),
                         ({"action": "buy"}, "invalid_action"), ({"action": "SHORT"}, "invalid_action"),
                         ({"cursor": "garbage"}, "invalid_cursor"), ({"from": "yesterday"}, "invalid_from"),
                         ({"to": "2026-01-01T00:00:00"}, "invalid_to")):
        response = client.get("/api/v1/decisions", params=params, headers=AUTH)
        assert response.status_code == 422 and response.json()["error"] == code, params


def test_portfolio(client):
    body = client.get("/api/v1/portfolio", headers=AUTH).json()
    assert {p["symbol"] for p in body["positions"]} == {"AAA", "BBB"}
    assert body["gross_exposure"] >= 0


def test_the_dashboard_is_served_without_a_token_and_holds_no_data(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("/ui/dashboard.js", "/ui/charts.js", "/ui/dashboard.css"):
        assert client.get(asset).status_code == 200, asset
    missing = client.get("/ui/nothing-here.js")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert client.get("/ui/%2e%2e/glassbox.py").status_code == 404  # nothing outside the dashboard's files


def test_authentication_and_scopes(client):
    assert client.get("/health").status_code == 200
    missing = client.get("/api/v1/portfolio")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/portfolio", headers={"Authorization": "Bearer wrong-token-000000000"}).status_code == 401
    narrow = {"Authorization": f"Bearer {PORTFOLIO_ONLY}"}
    assert client.get("/api/v1/portfolio", headers=narrow).status_code == 200
    assert client.get("/api/v1/decisions", headers=narrow).status_code == 403
    assert client.get("/metrics", headers=narrow).status_code == 403


def test_rate_limit_answers_429_with_retry_after(projected):
    app = create_app(config(projected, rate_limit=RateLimit(per_second=1, burst=3)))
    with TestClient(app) as limited:
        codes = [limited.get("/api/v1/portfolio", headers=AUTH).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        assert int(limited.get("/api/v1/portfolio", headers=AUTH).headers["Retry-After"]) >= 1
        assert limited.get("/health").status_code == 200  # probes are never limited


def test_ready_names_what_is_down(client, projected):
    assert client.get("/ready").json() == {"ready": True, "checks": {"postgresql": True, "redis": True, "kafka": True}}
    with TestClient(create_app(config(projected, kafka_servers="127.0.0.1:1"))) as broken:
        response = broken.get("/ready")
        assert response.status_code == 503 and response.json()["checks"]["kafka"] is False


def test_metrics_in_prometheus_text(client, projected):
    text = client.get("/metrics", headers=AUTH).text
    assert f'glassbox_relay_lag_events{{store="{projected.store}"}} 0.0' in text
    assert f'glassbox_relay_circuit_state{{store="{projected.store}"}} 0.0' in text
    assert 'glassbox_consumer_lag_messages{group="forensics"} 0.0' in text
    assert 'glassbox_dead_letters{group="forensics"} 0.0' in text
    assert 'glassbox_source_up{source="kafka"} 1.0' in text
    assert "glassbox_forensics_lag_messages 0.0" in text
