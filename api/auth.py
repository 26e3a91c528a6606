"""Bearer-token authentication with scopes, as ASGI middleware.

Tokens come from the ``GLASSBOX_API_TOKENS`` setting, parsed once at start::

    GLASSBOX_API_TOKENS="s3cr3t-0123456789ab:forensics:read,metrics:read;ops@other-0123456789ab:trading:admin"

i.e. ``[name@]token:scope,scope`` entries separated by ``;`` (a scope may
itself hold a colon). The name is who the token is in the records it leaves
(``Risk.Trading.Halted.v1`` says which token halted trading); without one it
is ``token-`` and the first 8 hex digits of the token's SHA-256. A request without a valid token gets 401; one whose token
lacks the route's scope gets 403, one with several ``Authorization`` headers
gets 400. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response
from glassbox import SettingsError

__all__ = ["MAX_TOKEN_BYTES", "SCOPES", "ApiTokens", "BearerAuthMiddleware", "required_scope"]

SCOPES = ("forensics:read", "portfolio:read", "metrics:read", "trading:admin")
"""``trading:admin`` may halt and resume trading (``POST /api/v1/trading/halt|resume``)."""

MAX_TOKEN_BYTES = 1_024
"""A longer bearer value is no token of ours: refused (401) before it is compared."""


@dataclass(frozen=True)
class ApiTokens:
    """Which token may do what. ``repr`` never shows a token."""

    scopes_by_token: Mapping[str, frozenset[str]]
    names_by_token: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> ApiTokens:
        """Parse the ``GLASSBOX_API_TOKENS`` format (see the module docstring).

        Raises:
            SettingsError: an entry without scopes, an unknown scope, a short token.
        """
        tokens: dict[str, frozenset[str]] = {}
        names: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in text.split(";"))):
            named, _, scopes_text = entry.partition(":")
            name, _, token = named.rpartition("@")
            if name and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
                raise SettingsError(f"GLASSBOX_API_TOKENS: a token's name is 1-64 letters, digits, '.', '_' or '-', "
                                    f"not {name[:70]!r}")
            scopes = frozenset(s.strip() for s in scopes_text.split(",") if s.strip())
            if len(token) < 16:
                raise SettingsError("GLASSBOX_API_TOKENS: every token needs at least 16 characters")
            if not scopes or scopes - set(SCOPES):
                raise SettingsError(
                    f"GLASSBOX_API_TOKENS: scopes must be some of {', '.join(SCOPES)}, got {sorted(scopes) or 'none'}"
                )
            tokens[token] = scopes
            names[token] = name or "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]
        return cls(tokens, names)

    def scopes_of(self, token: str | bytes) -> frozenset[str] | None:
        """The token's scopes, or None for an unknown token (constant-time per candidate).

        ``bytes`` is the token as the header carried it: any byte, never decoded, so
        no header can fail here.
        """
        known = self._known(token)
        return None if known is None else self.scopes_by_token[known]

    def name_of(self, token: str | bytes) -> str | None:
        """The token's name (module docstring), or None for an unknown token."""
        known = self._known(token)
        return None if known is None else self.names_by_token.get(known)

    def _known(self, token: str | bytes) -> str | None:
        given = token.encode() if isinstance(token, str) else token
        found = None
        for known in self.scopes_by_token:
            if hmac.compare_digest(known.encode(), given):
                found = known
        return found

    def __repr__(self) -> str:
        return f"ApiTokens({len(self.scopes_by_token)} tokens)"


def required_scope(path: str) -> str | None:
    """The scope a path needs; None for the open probes and the dashboard's static files (they hold no data)."""
    if path in ("/health", "/ready", "/") or path.startswith("/ui/"):
        return None
    if path == "/metrics":
        return "metrics:read"
    if path.startswith("/api/v1/portfolio") or path.startswith("/api/v1/alerts"):
        return "portfolio:read"
    if path.startswith("/api/v1/trading/"):
        return "trading:admin"
    if path == "/api/v1/trading":
        return "portfolio:read"
    return "forensics:read"


class BearerAuthMiddleware:
    """401 without a valid bearer token, 403 when it lacks the route's scope.

    On success the token is put in ``scope["state"]["client"]`` for the rate limiter.
    """

    def __init__(self, app: ASGIApp, tokens: ApiTokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope["path"])
        if needed is None:
            await self.app(scope, receive, send)
            return
        given = [value for name, value in scope.get("headers") or () if name.lower() == b"authorization"]
        kind, _, token = (given[0] if given else b"").partition(b" ")
        token = token.strip(b" \t")
        fits = kind.lower() == b"bearer" and len(token) <= MAX_TOKEN_BYTES
        scopes = self.tokens.scopes_of(token) if fits else None
        if len(given) > 1:
            response = error_response(
                400, "invalid_request", "send one Authorization header, not several",
                headers={"WWW-Authenticate": 'Bearer realm="glassbox", error="invalid_request"'},
            )
        elif scopes is None:
            response = error_response(
                401, "unauthorized", "send an API token as `Authorization: Bearer <token>`",
                headers={"WWW-Authenticate": 'Bearer realm="glassbox"'},
            )
        elif needed not in scopes:
            response = error_response(
                403, "forbidden", f"this token lacks the {needed!r} scope",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needed}"'},
            )
        else:
            state = scope.setdefault("state", {})
            state["client"] = "token:" + hashlib.sha256(token).hexdigest()[:16]
            state["token_name"] = self.tokens.name_of(token)
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
