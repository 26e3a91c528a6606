"""Reading a request's query string strictly, before any of it reaches the database.

Starlette's own parsing forgives: invalid UTF-8 becomes U+FFFD, a repeated
key keeps its last value, and any length or character passes. PostgreSQL
does not forgive (a text value cannot hold NUL), and a forgiven typo answers
a question the client did not ask. So each route names the parameters it
reads, with the longest value each may have, and :func:`read_query` answers
400 for whatever cannot be the value of any parameter:

=====================  =====================================================
``invalid_query``      the query string is longer than :data:`MAX_QUERY_BYTES`,
                       or a key is not UTF-8 once percent-decoded
``unknown_parameter``  a key the route does not read (a typo, not ignored)
``invalid_<name>``     the value is not UTF-8 once percent-decoded, holds a
                       control character (U+0000-U+001F, U+007F-U+009F),
                       is longer than the route allows, or the key is repeated
=====================  =====================================================

Text that is well formed but not a valid value (``limit=0``, a ``from`` that
is no time) is each route's own 422, as the README documents.
"""

from __future__ import annotations

import unicodedata
from typing import Mapping
from urllib.parse import unquote_to_bytes

from glassbox import GlassboxError

__all__ = ["MAX_QUERY_BYTES", "BadRequest", "read_query", "shown"]

MAX_QUERY_BYTES = 8_192
"""Far above any query this API reads (its longest is a page cursor of ~100 bytes)."""


class BadRequest(GlassboxError):
    """A request the API refuses before doing anything: answered as ``{"error": code, "detail": detail}``."""

    def __init__(self, status: int, code: str, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after_s = retry_after_s
        """Sent as ``Retry-After`` (a 503's)."""


def read_query(raw: bytes, reads: Mapping[str, int]) -> dict[str, str]:
    """The query string's parameters, each at most once, checked as the module docstring says.

    ``raw`` is the ASGI ``query_string`` (still percent-encoded); ``reads``
    maps each parameter the route reads to the longest value it accepts
    (in characters).

    Raises:
        BadRequest: 400 with the code of the first rule the query breaks.
    """
    if len(raw) > MAX_QUERY_BYTES:
        raise BadRequest(400, "invalid_query", f"the query string is {len(raw)} bytes; send at most {MAX_QUERY_BYTES}")
    found: dict[str, str] = {}
    for pair in filter(None, raw.split(b"&")):
        raw_key, _, raw_value = pair.partition(b"=")
        key = _decoded(raw_key)
        if key is None or _control_character(key) is not None:
            raise BadRequest(400, "invalid_query", f"the parameter name {shown(raw_key)} is not printable UTF-8 text")
        if key not in reads:
            known = ", ".join(reads) or "none"
            raise BadRequest(400, "unknown_parameter", f"{shown(key)} is not a parameter of this route (it reads: {known})")
        if key in found:
            raise BadRequest(400, f"invalid_{key}", f"{key} is given more than once; give it once")
        found[key] = _checked_value(key, raw_value, reads[key])
    return found


def shown(text: str | bytes, limit: int = 40) -> str:
    """``text`` for an error message: its repr (control characters escaped), cut to ``limit`` characters."""
    cut = text[:limit]
    return repr(cut) + ("…" if len(text) > limit else "")


def _checked_value(key: str, raw_value: bytes, max_length: int) -> str:
    value = _decoded(raw_value)
    if value is None:
        raise BadRequest(400, f"invalid_{key}", f"{key} is not UTF-8 once percent-decoded: {shown(raw_value)}")
    bad = _control_character(value)
    if bad is not None:
        raise BadRequest(400, f"invalid_{key}", f"{key} holds the control character U+{ord(bad):04X}: {shown(value)}")
    if len(value) > max_length:
        raise BadRequest(400, f"invalid_{key}", f"{key} is {len(value)} characters long; at most {max_length}")
    return value


def _decoded(raw: bytes) -> str | None:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _control_character(text: str) -> str | None:
    return next((c for c in text if unicodedata.category(c) == "Cc"), None)
