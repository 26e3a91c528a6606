"""The API's error answers: one body shape, and what each kind of failure is answered with.

Every error the API gives is ``{"error": <code>, "detail": <what to do>}``.
The exception handlers here map what may escape an endpoint:

- :class:`api.params.BadRequest`: its own status and code (400, 422);
- Starlette's routing errors: 404 ``not_found``, 405 ``method_not_allowed``;
- ``psycopg.DataError``, a value the database refused: 400, naming the
  request's parameters (the validation in :mod:`api.params` and the routes
  is meant to stop such values first; this is the net under it);
- ``psycopg.OperationalError`` and ``InterfaceError``: the database is down,
  restarting, or the pool had no connection within its wait (psycopg_pool's
  ``PoolTimeout`` is an ``OperationalError``): 503 ``database_unavailable``
  with ``Retry-After``;
- anything else: 500 ``internal_error``, in the same shape (a fault of ours).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import orjson
import psycopg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.params import BadRequest

__all__ = ["ORJSONResponse", "error_response", "exception_handlers"]

_ROUTING_CODES = {404: "not_found", 405: "method_not_allowed"}


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


def error_response(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """The one error body shape."""
    return ORJSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def exception_handlers(retry_after_s: int) -> dict[Any, Callable[..., Any]]:
    """Starlette ``exception_handlers`` for the mapping in the module docstring.

    ``retry_after_s`` is what a 503 tells the client to wait.
    """

    async def bad_request(request: Request, error: BadRequest) -> Response:
        headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
        return error_response(error.status, error.code, error.detail, headers=headers)

    async def routing(request: Request, error: HTTPException) -> Response:
        code = _ROUTING_CODES.get(error.status_code, "bad_request")
        detail = f"{request.method} {request.url.path[:80]!r}: {error.detail}"
        return error_response(error.status_code, code, detail, headers=error.headers)

    async def refused_value(request: Request, error: psycopg.DataError) -> Response:
        names = sorted({*request.query_params.keys(), *request.path_params.keys()})
        reason = (error.diag.message_primary or str(error)).splitlines()[0] if str(error) else type(error).__name__
        code = f"invalid_{names[0]}" if len(names) == 1 else "invalid_request"
        return error_response(400, code, f"the database refused a value of {', '.join(names) or 'the request'}: {reason}")

    async def unavailable(request: Request, error: psycopg.Error) -> Response:
        return error_response(
            503, "database_unavailable", "PostgreSQL is not answering (down or restarting); retry later",
            headers={"Retry-After": str(retry_after_s)},
        )

    async def internal(request: Request, error: Exception) -> Response:
        return error_response(500, "internal_error", "the API failed to answer; its log says why")

    return {
        BadRequest: bad_request,
        HTTPException: routing,
        psycopg.DataError: refused_value,
        psycopg.OperationalError: unavailable,
        psycopg.InterfaceError: unavailable,
        Exception: internal,
    }
