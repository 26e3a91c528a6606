"""The kill switch over HTTP: who may, what is recorded, and every bad request answered (the real Redis)."""

from __future__ import annotations

import uuid

import pytest
import redis
from starlette.testclient import TestClient

from actors.trading_control import TradingControl
from api.app import ApiConfig, create_app
from api.auth import ApiTokens
from edge.system_keys import SystemKeys

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"
TOKENS = ApiTokens.parse(f"ops@{ADMIN}:trading:admin,portfolio:read,metrics:read;{READER}:portfolio:read")
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_READER = {"Authorization": f"Bearer {READER}"}


@pytest.fixture
def switch(projected):
    keys = SystemKeys(f"api-trading-{uuid.uuid4().hex[:8]}:")
    control = TradingControl(projected.redis_url, keys)
    app = create_app(ApiConfig(projected.database_url, TOKENS, schema=projected.schema,
                               redis_url=projected.redis_url, trading=control, trading_key=keys.trading_state))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, control
    control.close()
    with redis.Redis.from_url(projected.redis_url) as r:
        for key in [*r.scan_iter(match=f"{keys.namespace}*"), *r.scan_iter(match=f"{{{keys.namespace}*")]:
            r.delete(key)


def test_an_admin_token_halts_and_resumes_and_the_record_names_it(switch) -> None:
    client, control = switch
    assert client.get("/api/v1/trading", headers=AS_READER).json()["state"] == "running"
    halted = client.post("/api/v1/trading/halt", headers=AS_ADMIN, json={"reason": "desk review", "flatten": True})
    assert halted.status_code == 200
    assert {k: halted.json()[k] for k in ("state", "flatten", "by", "reason")} == {
        "state": "halted", "flatten": True, "by": "api:ops", "reason": "desk review"}
    assert control.in_force().halted and control.history()[-1]["by"] == "api:ops"
    assert client.get("/api/v1/trading", headers=AS_READER).json()["state"] == "halted"
    metrics = client.get("/metrics", headers=AS_ADMIN).text
    assert "glassbox_trading_halted 1.0" in metrics and "glassbox_trading_flatten 1.0" in metrics
    resumed = client.post("/api/v1/trading/resume", headers=AS_ADMIN, json={"reason": "done"})
    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    assert "glassbox_trading_halted 0.0" in client.get("/metrics", headers=AS_ADMIN).text
    again = client.post("/api/v1/trading/resume", headers=AS_ADMIN)
    assert again.status_code == 409 and "not halted" in again.json()["detail"]


@pytest.mark.parametrize("body, status, code", [
    ({}, 400, "invalid_reason"),
    ({"reason": "   "}, 400, "invalid_reason"),
    ({"reason": 5}, 400, "invalid_reason"),
    ({"reason": "x" * 501}, 400, "invalid_reason"),
    ({"reason": "ok", "flatten": "yes"}, 400, "invalid_flatten"),
    ({"reason": "ok", "extra": 1}, 400, "unknown_field"),
    (b"not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (b"{" + b" " * 5_000 + b"}", 413, "body_too_large"),
])
def test_a_bad_halt_request_is_answered_with_its_reason_and_changes_nothing(switch, body, status, code) -> None:
    client, control = switch
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    answer = client.post("/api/v1/trading/halt", headers=AS_ADMIN, **kwargs)
    assert (answer.status_code, answer.json()["error"]) == (status, code)
    assert control.in_force() is None and control.history() == []


def test_halting_needs_the_admin_scope(switch) -> None:
    client, control = switch
    assert client.post("/api/v1/trading/halt", headers=AS_READER, json={"reason": "x"}).status_code == 403
    assert client.post("/api/v1/trading/halt", json={"reason": "x"}).status_code == 401
    assert control.history() == []


def test_without_a_switchboard_the_trading_routes_say_how_to_get_one(projected) -> None:
    app = create_app(ApiConfig(projected.database_url, TOKENS, schema=projected.schema))
    with TestClient(app) as client:
        answer = client.post("/api/v1/trading/halt", headers=AS_ADMIN, json={"reason": "x"})
    assert answer.status_code == 503 and "actors.system.api_main" in answer.json()["detail"]


def test_a_token_may_carry_a_name_and_otherwise_is_named_by_its_hash() -> None:
    from glassbox import SettingsError

    tokens = ApiTokens.parse(f"ops@{ADMIN}:trading:admin;{READER}:portfolio:read")
    assert tokens.name_of(ADMIN) == "ops" and tokens.scopes_of(ADMIN) == {"trading:admin"}
    assert tokens.name_of(READER).startswith("token-") and len(tokens.name_of(READER)) == 14
    assert tokens.name_of("unknown-token-0123456789") is None
    with pytest.raises(SettingsError, match="name"):
        ApiTokens.parse(f"bad name@{ADMIN}:trading:admin")
