"""The live stream's protocol, pure: the subscribe message, close codes, message shapes, a client's queue.

A client opens ``GET /api/v1/stream`` (a WebSocket) and sends one subscribe
message first, as JSON text of at most :data:`MAX_CLIENT_MESSAGE_BYTES`::

    {"type": "subscribe", "token": "<api token>",
     "kinds": ["decision", "portfolio", "system", "alert"],
     "symbols": ["AAPL"],                      # optional; none: every symbol
     "resume": {"epoch": "…", "seq": 1234}}    # optional; after a drop

The token may come in an ``Authorization: Bearer`` header of the upgrade
request instead (browsers cannot set one, hence the message); never in the
URL, which gets logged. ``decision`` needs the ``forensics:read`` scope, the
other kinds ``portfolio:read``.

Every frame the server sends is a JSON array of messages, each
``{"kind": …, "seq": …, "data": …}``. ``seq`` numbers the decisions and alerts
of one server run (``epoch``); portfolio and system messages carry the seq
they are current at. A client resumes by sending the epoch and the last seq
it received: it gets what it missed, or, when that is no longer held (or the
server restarted), ``"resumed": false`` and a fresh snapshot.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

__all__ = [
    "CLOSE_BAD_MESSAGE", "CLOSE_FORBIDDEN", "CLOSE_NO_SUBSCRIBE", "CLOSE_TOO_BIG", "CLOSE_TOO_SLOW",
    "CLOSE_UNAUTHORIZED", "KIND_SCOPES", "KINDS", "MAX_CLIENT_MESSAGE_BYTES", "ClientQueue", "Resume",
    "StreamRefusal", "Subscription", "parse_subscribe",
]

KINDS = ("decision", "portfolio", "system", "alert")
KIND_SCOPES = {"decision": "forensics:read", "portfolio": "portfolio:read", "system": "portfolio:read",
               "alert": "portfolio:read"}
MAX_CLIENT_MESSAGE_BYTES = 4_096
MAX_SYMBOLS = 1_000
_SYMBOL = re.compile(r"[A-Za-z0-9._:/^=-]{1,32}")
_EPOCH = re.compile(r"[0-9a-f]{1,64}")

CLOSE_TOO_BIG = 1009
"""RFC 6455's "message too big": a client message over MAX_CLIENT_MESSAGE_BYTES."""
CLOSE_BAD_MESSAGE = 4400
"""Not a subscribe message the server can read: not JSON, a field wrong, an unknown kind (the reason says which)."""
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
"""The token lacks the scope of a kind asked for."""
CLOSE_NO_SUBSCRIBE = 4408
"""No subscribe message within the time allowed after connecting."""
CLOSE_TOO_SLOW = 4429
"""The client fell too far behind (its queue filled): reconnect with ``resume`` to get what it missed."""


class StreamRefusal(Exception):
    """A client message the stream refuses: the connection is closed with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # a close reason is at most 123 bytes


@dataclass(frozen=True)
class Resume:
    epoch: str
    seq: int


@dataclass(frozen=True)
class Subscription:
    """What one client asked for."""

    kinds: frozenset[str]
    symbols: frozenset[str] = frozenset()
    """Empty: every symbol."""
    token: bytes | None = None
    resume: Resume | None = None

    def wants(self, kind: str, symbol: str | None) -> bool:
        return kind in self.kinds and (not self.symbols or symbol is None or symbol in self.symbols)


def parse_subscribe(raw: str | bytes) -> Subscription:
    """The subscribe message, checked field by field (module docstring).

    Raises:
        StreamRefusal: too big (1009) or not a valid subscribe message (4400), with the reason.
    """
    if len(raw) > MAX_CLIENT_MESSAGE_BYTES:
        raise StreamRefusal(CLOSE_TOO_BIG, f"a client message may have at most {MAX_CLIENT_MESSAGE_BYTES} bytes")
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise StreamRefusal(CLOSE_BAD_MESSAGE, "the first message must be a JSON subscribe message") from None
    if not isinstance(message, dict) or message.get("type") != "subscribe":
        raise StreamRefusal(CLOSE_BAD_MESSAGE, 'the first message must be {"type": "subscribe", ...}')
    unknown = set(message) - {"type", "token", "kinds", "symbols", "resume"}
    if unknown:
        raise StreamRefusal(CLOSE_BAD_MESSAGE, f"unknown field {sorted(unknown)[0][:40]!r} in subscribe")
    kinds = message.get("kinds")
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        raise StreamRefusal(CLOSE_BAD_MESSAGE, f"kinds must be a non-empty list of {', '.join(KINDS)}")
    for kind in kinds:
        if kind not in KINDS:
            raise StreamRefusal(CLOSE_BAD_MESSAGE, f"unknown kind {kind[:32]!r}: kinds are {', '.join(KINDS)}")
    symbols = message.get("symbols", [])
    if (not isinstance(symbols, list) or len(symbols) > MAX_SYMBOLS
            or not all(isinstance(s, str) and _SYMBOL.fullmatch(s) for s in symbols)):
        raise StreamRefusal(CLOSE_BAD_MESSAGE, f"symbols must be a list of at most {MAX_SYMBOLS} symbols")
    token = message.get("token")
    if token is not None and not isinstance(token, str):
        raise StreamRefusal(CLOSE_BAD_MESSAGE, "token must be a string")
    return Subscription(frozenset(kinds), frozenset(symbols), token.encode() if token is not None else None,
                        _resume(message.get("resume")))


def _resume(value: object) -> Resume | None:
    if value is None:
        return None
    if (not isinstance(value, dict) or set(value) != {"epoch", "seq"} or not isinstance(value["epoch"], str)
            or not _EPOCH.fullmatch(value["epoch"]) or type(value["seq"]) is not int or value["seq"] < 0):
        raise StreamRefusal(CLOSE_BAD_MESSAGE, 'resume must be {"epoch": "<hex>", "seq": <whole number>}')
    return Resume(value["epoch"], value["seq"])


@dataclass
class ClientQueue:
    """What waits to be sent to one client: bounded; portfolio and system coalesce to the latest.

    Decisions and alerts queue in order up to ``limit``; one more means the
    client is too far behind (:attr:`overflowed`), and the server closes it
    (:data:`CLOSE_TOO_SLOW`) rather than hold more or slow anyone else.
    A portfolio message merges into the one waiting (positions by symbol,
    totals replaced); a system message replaces the one waiting.
    """

    limit: int = 2_000
    events: deque[bytes] = field(default_factory=deque)
    portfolio: dict[str, Any] | None = None
    portfolio_seq: int = 0
    system: bytes | None = None
    overflowed: bool = False

    replayed: int = 0
    """What a resume put in the queue: it counts on top of ``limit`` until it is sent."""
    _portfolio_encoded: bytes | None = None
    _portfolio_shared: Mapping[str, Any] | None = None

    def offer_event(self, encoded: bytes) -> None:
        if len(self.events) >= self.limit + self.replayed:
            self.overflowed = True
            return
        self.events.append(encoded)

    def replay(self, encoded: bytes) -> None:
        """What a resuming client missed (bounded by the hub's ring, not by ``limit``)."""
        self.events.append(encoded)
        self.replayed += 1

    def offer_portfolio(self, seq: int, delta: Mapping[str, Any], encoded: bytes | None = None) -> None:
        """A book delta; ``encoded``, when given, is its message as encoded once for every client.

        A delta that arrives while none waits is kept as the shared bytes, so a
        client that keeps up costs no encoding of its own; a second one before
        the next frame merges into a copy, encoded when the frame is taken.
        """
        if self.portfolio is None and self._portfolio_encoded is None and encoded is not None:
            self._portfolio_encoded, self._portfolio_shared = encoded, delta
        else:
            if self._portfolio_shared is not None:
                self._merge_portfolio(self._portfolio_shared)
                self._portfolio_encoded = self._portfolio_shared = None
            self._merge_portfolio(delta)
        self.portfolio_seq = seq

    def _merge_portfolio(self, delta: Mapping[str, Any]) -> None:
        if self.portfolio is None:
            self.portfolio = {"positions": dict(delta.get("positions", {})), "totals": delta.get("totals")}
        else:
            self.portfolio["positions"].update(delta.get("positions", {}))
            if delta.get("totals") is not None:
                self.portfolio["totals"] = delta["totals"]

    def offer_system(self, encoded: bytes) -> None:
        self.system = encoded

    def __bool__(self) -> bool:
        return (bool(self.events) or self.portfolio is not None or self._portfolio_encoded is not None
                or self.system is not None)

    def take_frame(self) -> bytes:
        """Everything waiting, as one frame (a JSON array), oldest first; the queue is then empty."""
        parts = list(self.events)
        self.events.clear()
        self.replayed = 0
        if self._portfolio_encoded is not None:
            parts.append(self._portfolio_encoded)
            self._portfolio_encoded = self._portfolio_shared = None
        elif self.portfolio is not None:
            parts.append(encode_message("portfolio", self.portfolio_seq, self.portfolio))
            self.portfolio = None
        if self.system is not None:
            parts.append(self.system)
            self.system = None
        return b"[" + b",".join(parts) + b"]"


def encode_message(kind: str, seq: int, data: Any) -> bytes:
    """One message, encoded once and shared by every client that gets it."""
    return orjson.dumps({"kind": kind, "seq": seq, "data": data})


def decision_summary(state: Mapping[str, Any], store: str, position: int) -> dict[str, Any] | None:
    """A ``Trading.Decision.Taken`` event's state as the stream shows it; None when it is not readable."""
    try:
        summary = {
            "decision_id": _text(state["decision_id"]),
            "symbol": _text(state["symbol"]),
            "action": _text(state["action"]),
            "quantity": _number(state["quantity"]),
            "price": _number(state["price"]),
            "confidence": _number(state.get("confidence", 0.0)),
            "risk_passed": bool(state.get("risk_passed", True)),
            "model_version": _text(state.get("model_version", "")),
            "timestamp_ns": int(state["timestamp_ns"]),
            "correlation_id": _text(state.get("correlation_id", "")),
            "store": store,
            "log_position": position,
        }
    except (KeyError, TypeError, ValueError):
        return None
    return summary


def fill_delta(state: Mapping[str, Any]) -> tuple[str, float, float] | None:
    """(symbol, position after, price) of a ``Trading.Order.Filled`` event; None when it is not readable."""
    try:
        return _text(state["symbol"]), _number(state["position_after"]), _number(state["price"])
    except (KeyError, TypeError, ValueError):
        return None


def alert_summary(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``Risk.Alert.Triggered`` event's state as the stream shows it; None when it is not readable."""
    try:
        return {
            "symbol": _text(state["symbol"]),
            "move": _number(state["move"]),
            "severity": _text(state["severity"]),
            "window_s": _number(state.get("window_s", 0.0)),
            "price": _number(state.get("price", 0.0)),
            "timestamp_ns": int(state["timestamp_ns"]),
        }
    except (KeyError, TypeError, ValueError):
        return None


def _text(value: object) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError("not a short string")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("not a finite number")
    return float(value)
