"""The kill switch over HTTP: ``GET /api/v1/trading``, ``POST /api/v1/trading/halt`` and ``/resume``.

The POSTs need the ``trading:admin`` scope and take a JSON object::

    POST /api/v1/trading/halt    {"reason": "desk review", "flatten": false}
    POST /api/v1/trading/resume  {"reason": "review done"}

and answer the state now in force (``{"state": "halted", "by": <token name>, ...}``).
The halt is recorded as ``Risk.Trading.Halted.v1`` (who: the token's name) by the
switchboard the composition root hands the app (``actors.system.api_main``):
the API itself holds no trading logic.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response

from api.errors import ORJSONResponse, error_response
from api.params import BadRequest, read_query
from edge.shared_book import TradingState
from glassbox import GlassboxError

__all__ = ["MAX_BODY_BYTES", "TradingSwitchboard", "halt", "resume", "trading_state"]

MAX_BODY_BYTES = 4_096
MAX_REASON = 500


class TradingSwitchboard(Protocol):
    """What the API needs of the kill switch (``actors.trading_control.TradingControl`` is one)."""

    def halt(self, by: str, reason: str, flatten: bool = False) -> TradingState: ...

    def resume(self, by: str, reason: str = "") -> TradingState: ...

    def in_force(self) -> TradingState | None: ...


async def trading_state(request: Request) -> Response:
    """GET /api/v1/trading: running or halted, by whom, why, since when."""
    read_query(request.scope["query_string"], {})
    switchboard = _switchboard(request)
    if switchboard is None:
        return _not_wired()
    state = await asyncio.to_thread(switchboard.in_force)
    return ORJSONResponse((state or TradingState()).as_dict())


async def halt(request: Request) -> Response:
    """POST /api/v1/trading/halt: stop every desk opening or growing positions (``flatten``: and close them)."""
    body = await _body(request, {"reason", "flatten"})
    reason = _reason(body, required=True)
    flatten = body.get("flatten", False)
    if type(flatten) is not bool:
        raise BadRequest(400, "invalid_flatten", "flatten must be true or false")
    return await _change(request, lambda board, by: board.halt(by, reason, flatten))


async def resume(request: Request) -> Response:
    """POST /api/v1/trading/resume: let the desks trade again; 409 when trading is not halted."""
    body = await _body(request, {"reason"})
    reason = _reason(body, required=False)
    return await _change(request, lambda board, by: board.resume(by, reason))


async def _change(request: Request, change: Any) -> Response:
    read_query(request.scope["query_string"], {})
    switchboard = _switchboard(request)
    if switchboard is None:
        return _not_wired()
    by = f"api:{request.scope.get('state', {}).get('token_name') or 'unnamed'}"
    try:
        state = await asyncio.to_thread(change, switchboard, by)
    except GlassboxError as error:  # a switch that cannot change so: resuming what is not halted
        return error_response(409, "conflict", str(error))
    return ORJSONResponse(state.as_dict())


def _switchboard(request: Request) -> TradingSwitchboard | None:
    return request.state.config.trading


def _not_wired() -> Response:
    return error_response(503, "trading_unavailable",
                          "this API was started without the kill switch (it needs REDIS_URL); start it with "
                          "`uvicorn --factory actors.system.api_main:app_from_env`")


async def _body(request: Request, fields: set[str]) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise BadRequest(413, "body_too_large", f"send at most {MAX_BODY_BYTES} bytes of JSON")
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(400, "invalid_json", "the body is not JSON: send an object such as "
                                              '{"reason": "desk review"}') from None
    if not isinstance(body, dict):
        raise BadRequest(400, "invalid_json", "the body must be a JSON object")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise BadRequest(400, "unknown_field", f"{unknown[0][:40]!r} is not a field here (it reads: "
                                               f"{', '.join(sorted(fields))})")
    return body


def _reason(body: dict[str, Any], required: bool) -> str:
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise BadRequest(400, "invalid_reason", f"reason must be text of at most {MAX_REASON} characters")
    if required and not reason.strip():
        raise BadRequest(400, "invalid_reason", "give the reason for the halt: {\"reason\": \"...\"}")
    return reason
