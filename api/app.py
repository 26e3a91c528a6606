"""The Starlette app: forensics, decisions, portfolio, health, readiness, metrics.

Built by :func:`create_app` from an :class:`ApiConfig`; the PostgreSQL pool
(psycopg's async pool) and the Redis client live in the lifespan state.
Endpoints stay thin: validate the request, call one query, shape the answer.
Run it with uvicorn (``standard`` extra, for httptools) through the
composition root, which wires the kill switch in (:mod:`api.trading`)::

    uvicorn --factory actors.system.api_main:app_from_env --port 8000
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator, Sequence
from uuid import UUID

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from api import trading
from api.auth import ApiTokens, BearerAuthMiddleware
from api.backtests import backtest_runs, find_run, read_report, run_forensics_schema, run_summary
from api.dashboard import dashboard_routes
from api.errors import ORJSONResponse, error_response, exception_handlers
from api.metrics import MetricsSources, render_metrics
from api.params import BadRequest, read_query, shown
from api.queries import BadCursor, alert_page, decision_page, forensics_record, portfolio
from api.rate_limit import RateLimit, RateLimitMiddleware
from api.stream import stream
from api.stream_hub import ReadModelReads, StreamConfig, StreamHub
from edge.run_names import RUN_ID_RULE, is_run_id
from backbone.broker import broker_answers
from backbone.topics import TopicSettings
from edge.system_keys import SystemKeys
from edge.tick_stream import TickKeys
from glassbox import Settings, SettingsError
from projections.lag import forensics_trailing_s
from projections.risk_reasoning import risk_reasoning
from projections.pg_json import use_orjson

__all__ = ["ApiConfig", "config_from_settings", "create_app"]

MAX_PAGE = 1_000

_RECONNECT_GIVE_UP_S = 10.0
"""How long the pool retries one connection attempt (backoff 1, 2, 4 s …) before a new request starts afresh."""

DECISIONS_READS = {"symbol": 64, "action": 8, "from": 64, "to": 64, "limit": 64, "cursor": 256}
"""The parameters ``/api/v1/decisions`` reads and the longest value of each (characters)."""
ACTIONS = ("BUY", "SELL", "HOLD")
"""What ``action=`` may ask for: a decision's action."""
BACKTESTS_READS = {"limit": 64}
FORENSICS_READS = {"run": 64}
"""The parameters ``/api/v1/backtests`` reads."""
ALERTS_READS = {"symbol": 64, "since": 64, "limit": 64, "cursor": 256}
"""The parameters ``/api/v1/alerts`` reads."""


@dataclass(frozen=True)
class ApiConfig:
    """Everything the API needs; secrets stay out of the repr."""

    database_url: str = field(repr=False)
    tokens: ApiTokens
    schema: str = "glassbox"
    redis_url: str | None = field(default=None, repr=False)
    kafka_servers: str | None = None
    relay_stores: Sequence[str] = ()
    components_key: str | None = None
    """Where ``glassbox up`` publishes its components' state and restarts (for ``/metrics``)."""
    trading_key: str | None = None
    """Where the kill switch's state is (for ``/metrics``)."""
    tick_dead_letter_counts_key: str | None = None
    """Where the tick dead letters are counted per reason (for ``/metrics``)."""
    topics: TopicSettings = field(default_factory=TopicSettings)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    retry_after_s: int = 1
    """What a 202 (forensics not computed yet) tells the client to wait."""
    pool_size: int = 16
    pool_wait_s: float = 5.0
    """How long a request waits for a PostgreSQL connection before it is answered 503."""
    database_retry_after_s: int = 5
    """What a 503 (PostgreSQL not answering) tells the client to wait."""
    trading: trading.TradingSwitchboard | None = field(default=None, repr=False)
    """The kill switch (:mod:`api.trading`); None: its routes answer 503."""
    stream: StreamConfig = field(default_factory=StreamConfig)
    """The live stream's sources and bounds (``GET /api/v1/stream``; it needs ``redis_url``)."""
    backtests_store: str | None = None
    """The event store of the completed backtests (``GET /api/v1/backtests``; it needs ``redis_url``)."""


def create_app(config: ApiConfig) -> Starlette:
    """The API as an ASGI app (auth, then rate limit, then routes)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # A bounded wait: during an outage a request is answered 503 within pool_wait_s (not
        # psycopg_pool's 30 s). Connections are not checked before each use (a round trip on every
        # request): one that died with the server fails its request with a 503 and the pool drops it.
        # The pool's reconnect backoff doubles without bound until it gives up (5 min by default), so a
        # long outage would keep the API answering 503 for minutes after PostgreSQL is back; giving up
        # after _RECONNECT_GIVE_UP_S lets the next request start a fresh attempt at once instead.
        pool = AsyncConnectionPool(
            config.database_url, min_size=1, max_size=config.pool_size, open=False, configure=_configure,
            timeout=config.pool_wait_s,
            reconnect_timeout=_RECONNECT_GIVE_UP_S,
        )
        await pool.open(wait=True, timeout=10)
        client = aioredis.Redis.from_url(config.redis_url) if config.redis_url else None
        async def forensics_lag_s() -> float:
            async with pool.connection() as conn:
                return await forensics_trailing_s(conn, config.schema)

        async def positions() -> list[dict[str, Any]]:
            async with pool.connection() as conn:
                return await portfolio(conn, config.schema)

        hub = (StreamHub(config.redis_url, config.stream, ReadModelReads(forensics_lag_s, positions))
               if config.redis_url else None)
        if hub is not None:
            await hub.start()
        try:
            yield {"pool": pool, "redis": client, "config": config, "stream_hub": hub}
        finally:
            if hub is not None:
                await hub.stop()
            if client is not None:
                await client.aclose()
            await pool.close()

    routes = [
        Route("/api/v1/forensics/{decision_id}", forensics, methods=["GET"]),
        Route("/api/v1/decisions", decisions, methods=["GET"]),
        Route("/api/v1/portfolio", portfolio_view, methods=["GET"]),
        Route("/api/v1/alerts", alerts, methods=["GET"]),
        Route("/api/v1/backtests", backtests, methods=["GET"]),
        Route("/api/v1/backtests/{run_id}", backtest, methods=["GET"]),
        Route("/api/v1/trading", trading.trading_state, methods=["GET"]),
        Route("/api/v1/trading/halt", trading.halt, methods=["POST"]),
        Route("/api/v1/trading/resume", trading.resume, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        WebSocketRoute("/api/v1/stream", stream),
        *dashboard_routes(),
    ]
    middleware = [
        Middleware(BearerAuthMiddleware, tokens=config.tokens),
        Middleware(RateLimitMiddleware, limit=config.rate_limit),
    ]
    return Starlette(
        routes=routes, middleware=middleware, lifespan=lifespan,
        exception_handlers=exception_handlers(config.database_retry_after_s),
    )


async def _configure(conn: Any) -> None:
    use_orjson(conn)


def config_from_settings(settings: Settings, switchboard: trading.TradingSwitchboard | None = None,
                         capital: float = StreamConfig.capital) -> ApiConfig:
    """The app's configuration from the settings (``actors.system.api_main`` builds the app with it).

    ``capital`` is the book's starting capital (the live stream shows equity from it).

    ``DATABASE_URL`` and ``GLASSBOX_API_TOKENS`` are required; ``REDIS_URL``,
    ``KAFKA_BOOTSTRAP_SERVERS``, ``GLASSBOX_SCHEMA``, ``GLASSBOX_RELAY_STORES``
    (comma-separated store names), ``GLASSBOX_TOPIC_PREFIX`` and
    ``GLASSBOX_API_RATE_PER_S`` (per client, default 200) are optional.

    Raises:
        SettingsError: a required setting is missing or malformed.
    """
    if not settings.database_url:
        raise SettingsError("the API reads the read models: set DATABASE_URL")
    tokens = ApiTokens.parse(settings.api_tokens)
    if not tokens.scopes_by_token:
        raise SettingsError("set GLASSBOX_API_TOKENS (token:scope,scope;...) so the API can authenticate clients")
    per_second = settings.api_rate_per_s
    limit = RateLimit(per_second=per_second, burst=max(1, int(per_second * 2)))
    return ApiConfig(
        settings.database_url, tokens, schema=settings.schema,
        redis_url=settings.redis_url, kafka_servers=settings.kafka_bootstrap_servers,
        relay_stores=settings.relay_stores, components_key=SystemKeys(settings.namespace).components,
        trading_key=SystemKeys(settings.namespace).trading_state,
        tick_dead_letter_counts_key=TickKeys(settings.namespace).dead_letter_counts,
        topics=TopicSettings.from_settings(settings, prefix=settings.topic_prefix),
        rate_limit=limit, trading=switchboard,
        stream=StreamConfig(stores=settings.relay_stores, book_key=SystemKeys(settings.namespace).risk_book,
                            trading_key=SystemKeys(settings.namespace).trading_state, capital=capital,
                            max_position_fraction=settings.risk_max_position_fraction),
        backtests_store=SystemKeys(settings.namespace).backtests_store,
    )


async def forensics(request: Request) -> Response:
    """GET /api/v1/forensics/{decision_id}[?run=]: why a decision was taken (live, or in backtest ``run``)."""
    q = read_query(request.scope["query_string"], FORENSICS_READS)
    raw = request.path_params["decision_id"]
    try:
        decision_id = UUID(raw)
    except ValueError:
        return error_response(422, "invalid_decision_id", f"{shown(raw, 64)} is not a UUID")
    config: ApiConfig = request.state.config
    schema = config.schema
    if "run" in q:
        state = await _run_state(request, q["run"])
        schema = run_forensics_schema(state)
        if schema is None:
            raise BadRequest(404, "no_forensics", f"backtest {q['run']} was not run with --forensics: its decisions "
                                                  "were not explained (run it again with --forensics)")
    async with request.state.pool.connection() as conn:
        try:
            decision, record = await forensics_record(conn, schema, decision_id)
        except psycopg.errors.UndefinedTable:
            if "run" not in q:
                raise
            raise BadRequest(404, "no_forensics", f"the schema {schema} of backtest {q['run']} is gone from the "
                                                  "database (dropped?): run the backtest again with --forensics"
                             ) from None
    if decision is None:
        return error_response(404, "not_found", f"no decision {decision_id} (unknown, or not projected yet)")
    if record is None:
        return error_response(
            202, "pending", "the decision is recorded; its forensics is being computed",
            headers={"Retry-After": str(config.retry_after_s)},
        )
    return ORJSONResponse(forensics_body(decision, record))


def normalised_entropy(probs: dict[str, float] | None) -> float | None:
    """The regime probabilities' entropy over its maximum (ln of the number of regimes): 0 sure, 1 clueless.

    So a threshold means the same for any number of regimes (the seeds' "entropy > 1.5" cannot fire in
    nats with three regimes, whose maximum is ln 3 ≈ 1.10).
    """
    values = [p for p in (probs or {}).values() if isinstance(p, (int, float)) and p > 0]
    if len(probs or {}) < 2 or not values:
        return None
    return -sum(p * math.log(p) for p in values) / math.log(len(probs))


def _executed(decision: dict[str, Any], fill: dict[str, Any] | None) -> str:
    return f"{fill['side']} {fill['quantity']:g}" if fill else "HOLD"


def forensics_body(decision: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The forensics record in the seeds' shape."""
    fill = record.get("fill") or decision.get("fill")
    checks = decision["risk_checks"] or []
    return {
        "decision_id": str(decision["decision_id"]),
        "symbol": decision["symbol"],
        "timestamp": decision["decided_at"].isoformat(),
        "action": decision["action"],
        "quantity": decision["quantity"],
        "confidence": decision["confidence"],
        "explanations": {
            "shap_values": {t["feature"]: t["shap"] for t in record["top_features"]},
            "all_shap_values": record["shap_values"],
            "top_features": record["top_features"],
            "expected_value": record["expected_value"],
            "model_output": record["model_output"],
            "regime_reasoning": record["regime_reasoning"],
            "strategy_selection": record["strategy_selection"],
            "risk_reasoning": risk_reasoning(checks, _executed(decision, fill)),
            "regime_probs": decision["regime_probs"],
            "regime_entropy_normalised": normalised_entropy(decision["regime_probs"]),
            "strategy_weights": decision["strategy_weights"],
        },
        "execution_details": {
            "executed": fill is not None,
            "execution_price": fill["price"] if fill else None,
            "quantity": fill["quantity"] if fill else 0.0,
            "side": fill["side"] if fill else None,
            "position_after": fill["position_after"] if fill else None,
            "slippage": 0.0 if fill else None,
            "fill": fill,
        },
        "audit_trail": {
            "risk_checks_passed": [c["name"] for c in checks if c.get("passed")],
            "risk_checks_failed": [c["name"] for c in checks if not c.get("passed")],
            "risk_checks": checks,
            "model_version": record["model_version"],
            "correlation_id": decision["correlation_id"],
            "log_position": decision["log_position"],
            "forensics_computed_at": record["computed_at"].isoformat(),
        },
    }


async def decisions(request: Request) -> Response:
    """GET /api/v1/decisions?symbol=&action=&from=&to=&limit=&cursor=: decisions in time order, paged."""
    q = read_query(request.scope["query_string"], DECISIONS_READS)
    limit = _page_limit(q.get("limit", "100"))
    action = q.get("action")
    if action is not None and action not in ACTIONS:
        raise BadRequest(422, "invalid_action", f"action must be one of {', '.join(ACTIONS)}, not {shown(action)}")
    bounds = {name: _aware_time(name, q.get(name)) for name in ("from", "to")}
    config: ApiConfig = request.state.config
    try:
        async with request.state.pool.connection() as conn:
            page = await decision_page(
                conn, config.schema, symbol=q.get("symbol"), action=action, start=bounds["from"], end=bounds["to"],
                limit=limit, cursor=q.get("cursor"),
            )
    except BadCursor as error:
        return error_response(422, "invalid_cursor", str(error))
    return ORJSONResponse({"decisions": page.rows, "next_cursor": page.next_cursor})


async def alerts(request: Request) -> Response:
    """GET /api/v1/alerts?since=&symbol=&limit=&cursor=: price alerts in time order, paged, from the archive."""
    q = read_query(request.scope["query_string"], ALERTS_READS)
    limit = _page_limit(q.get("limit", "100"))
    since = _aware_time("since", q.get("since"))
    config: ApiConfig = request.state.config
    try:
        async with request.state.pool.connection() as conn:
            page = await alert_page(conn, config.schema, symbol=q.get("symbol"), since=since, limit=limit,
                                    cursor=q.get("cursor"))
    except BadCursor as error:
        return error_response(422, "invalid_cursor", str(error))
    return ORJSONResponse({"alerts": page.rows, "next_cursor": page.next_cursor})


async def backtests(request: Request) -> Response:
    """GET /api/v1/backtests?limit=: the completed backtests, newest first (from their event store in Redis)."""
    q = read_query(request.scope["query_string"], BACKTESTS_READS)
    limit = _page_limit(q.get("limit", "100"))
    async with _run_records(request) as (client, store):
        runs, unreadable = await backtest_runs(client, store, limit)
    return ORJSONResponse({"backtests": runs, "unreadable": unreadable})


async def backtest(request: Request) -> Response:
    """GET /api/v1/backtests/{run_id}: one run's record and its report (``report.json``, where the run wrote it)."""
    read_query(request.scope["query_string"], {})
    state = await _run_state(request, request.path_params["run_id"])
    report, problem = await read_report(state)
    return ORJSONResponse({"run": run_summary(state), "report": report, "report_problem": problem})


async def _run_state(request: Request, run_id: str) -> dict[str, Any]:
    """The stored record of backtest ``run_id``; a 422, 404 or 503 (raised) when there is none to read."""
    if not is_run_id(run_id):
        raise BadRequest(422, "invalid_run", f"{shown(run_id, 64)} cannot name a run ({RUN_ID_RULE})")
    async with _run_records(request) as (client, store):
        state = await find_run(client, store, run_id)
    if state is None:
        raise BadRequest(404, "unknown_run", f"no completed backtest {run_id} is recorded (see GET /api/v1/backtests)")
    return state


@contextlib.asynccontextmanager
async def _run_records(request: Request) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """(Redis, the backtests' store) to read run records from; a 503 (raised) when there is none, or Redis fails."""
    config: ApiConfig = request.state.config
    if request.state.redis is None or not config.backtests_store:
        raise BadRequest(503, "no_backtest_store", "the API was started without REDIS_URL: it cannot read the "
                                                   "backtests' records", retry_after_s=60)
    try:
        yield request.state.redis, config.backtests_store
    except (aioredis.RedisError, OSError):
        raise BadRequest(503, "redis_unavailable", "Redis does not answer: try again shortly",
                         retry_after_s=5) from None


def _page_limit(text: str) -> int:
    """``limit`` as an int in 1..MAX_PAGE: ASCII digits only (``int`` would also take ``1_0``, `` 7`` or ``٣``)."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_PAGE):
        raise BadRequest(422, "invalid_limit", f"limit must be a whole number from 1 to {MAX_PAGE}, not {shown(text)}")
    return int(text)


def _aware_time(name: str, text: str | None) -> datetime | None:
    """An ISO 8601 time with its timezone, or None when not given."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(422, f"invalid_{name}", f"{name}={shown(text)} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise BadRequest(422, f"invalid_{name}", f"{name} needs a timezone, e.g. 2026-01-02T00:00:00Z")
    return at


async def portfolio_view(request: Request) -> Response:
    """GET /api/v1/portfolio: positions per symbol and their totals, as projected."""
    read_query(request.scope["query_string"], {})
    config: ApiConfig = request.state.config
    async with request.state.pool.connection() as conn:
        rows = await portfolio(conn, config.schema)
    exposure = sum(abs(r["quantity"] * (r["last_price"] or 0.0)) for r in rows)
    pnl = sum(r["cash"] + r["quantity"] * (r["last_price"] or 0.0) for r in rows)
    return ORJSONResponse({"positions": rows, "gross_exposure": exposure, "pnl": pnl})


async def health(request: Request) -> Response:
    """GET /health: the process is alive."""
    return ORJSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """GET /ready: 200 when PostgreSQL, Redis and Kafka answer, else 503 naming what does not."""
    config: ApiConfig = request.state.config
    checks: dict[str, bool] = {}
    try:
        async with request.state.pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
        checks["postgresql"] = True
    except Exception:  # noqa: BLE001 - any failure means not ready
        checks["postgresql"] = False
    if request.state.redis is not None:
        try:
            checks["redis"] = bool(await asyncio.wait_for(request.state.redis.ping(), 2))
        except Exception:  # noqa: BLE001
            checks["redis"] = False
    if config.kafka_servers:
        checks["kafka"] = await asyncio.to_thread(broker_answers, config.kafka_servers, 2.0)
    status = 200 if all(checks.values()) else 503
    return ORJSONResponse({"ready": status == 200, "checks": checks}, status_code=status)


async def metrics(request: Request) -> Response:
    """GET /metrics: Prometheus text format (relay, consumer lag, dead letters, circuit, forensics lag)."""
    config: ApiConfig = request.state.config
    sources = MetricsSources(
        request.state.pool, config.schema, request.state.redis, config.relay_stores, config.kafka_servers, config.topics,
        components_key=config.components_key, trading_key=config.trading_key,
        tick_dead_letter_counts_key=config.tick_dead_letter_counts_key,
    )
    return Response(await render_metrics(sources), media_type="text/plain; version=0.0.4; charset=utf-8")
