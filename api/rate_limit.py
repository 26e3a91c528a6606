"""A per-client token-bucket rate limit, as ASGI middleware (429 with Retry-After).

The client is the authenticated token when there is one (set by the auth
middleware), else the peer address. Buckets live in this process: with
several API processes each enforces its own share.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RateLimit", "RateLimitMiddleware", "TokenBuckets"]


@dataclass(frozen=True)
class RateLimit:
    """``per_second`` sustained requests per client, bursts up to ``burst``."""

    per_second: float = 200.0
    burst: int = 400

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError(f"rate limit out of range: {self}")


class TokenBuckets:
    """One bucket per client; pure arithmetic on a clock passed in."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic, max_clients: int = 100_000) -> None:
        self.limit = limit
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = self._clock()
        tokens, at = self._buckets.get(client, (float(self.limit.burst), now))
        tokens = min(float(self.limit.burst), tokens + (now - at) * self.limit.per_second)
        if tokens >= 1.0:
            self._remember(client, tokens - 1.0, now)
            return 0.0
        self._remember(client, tokens, now)
        return (1.0 - tokens) / self.limit.per_second

    def _remember(self, client: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= self._max_clients and client not in self._buckets:
            self._buckets.clear()  # bounded memory: forgetting full buckets only forgives
        self._buckets[client] = (tokens, now)


class RateLimitMiddleware:
    """Answers 429 with ``Retry-After`` when a client exceeds its rate; /health is never limited."""

    def __init__(self, app: ASGIApp, limit: RateLimit) -> None:
        self.app = app
        self.buckets = TokenBuckets(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        client = scope.get("state", {}).get("client") or "peer:" + str((scope.get("client") or ("?",))[0])
        wait = self.buckets.take(client)
        if wait:
            response = JSONResponse(
                {"error": "rate_limited", "detail": f"more than {self.buckets.limit.per_second:g} requests/s"},
                status_code=429, headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
