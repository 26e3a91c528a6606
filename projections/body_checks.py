"""Checks of the envelope fields and bodies each projection writes, before any row is written.

Pure code. An envelope that passed :func:`projections.envelopes.check_envelope`
(it has the required keys and a readable schema version) may still carry values no
table can hold: an ``event_id`` that is no UUID, a ``null`` quantity, a NaN
price, a dict where a symbol belongs, a timestamp past year 9999. These
checks catch such a record cheaply and say which field is wrong, so it is
dead-lettered as ``invalid_record`` with that reason; a value that passes
them and is still refused by PostgreSQL is found by the worker's bisection
(the backstop, reason ``database_refused``).

Bounds: numbers are finite and at most :data:`MAX_MAGNITUDE` in size, so a
fill's cash (quantity × price + commission) stays finite; short texts (ids,
symbols, event types: indexed columns) are at most :data:`MAX_KEY_TEXT`
characters; no text holds a NUL (PostgreSQL refuses it).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping
from uuid import UUID

from edge.ticks import INT64_MAX
from projections.failures import PoisonMessage

__all__ = [
    "MAX_KEY_TEXT",
    "MAX_MAGNITUDE",
    "check_decision",
    "check_event_fields",
    "check_fill",
]

MAX_MAGNITUDE = 1e12
"""The largest absolute quantity, price, weight or position a row takes."""
MAX_KEY_TEXT = 200
"""The longest symbol, event type, store or model version (indexed columns have a row size limit)."""
_INT64_MIN = -INT64_MAX - 1  # 1677-09-21 as ns; with INT64_MAX (2262-04-11) what a 64-bit JSON integer holds:
# every envelope is also stored as JSON, whose integers are 64-bit here
_INT32 = 2**31 - 1
_ACTIONS = ("BUY", "SELL", "HOLD")
_SIDES = ("BUY", "SELL")
_REGIMES = ("bull", "bear", "sideways")


def _invalid(field: str, problem: str, value: object) -> PoisonMessage:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return PoisonMessage("invalid_record", f"{field} {problem} (got {shown})", permanent=True)


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch
"""The form every id the relay and the desks write has: a match needs no ``UUID()`` (a fifth of its cost)."""


def _uuid(body: Mapping[str, Any], field: str, where: str = "") -> None:
    value = body.get(field)
    if type(value) is str and _CANONICAL_UUID(value):
        return
    ok = isinstance(value, str) and len(value) <= 64
    if ok:
        try:
            UUID(value)
        except ValueError:
            ok = False
    if not ok:
        raise _invalid(where + field, "must be a UUID string", value)


def _text(body: Mapping[str, Any], field: str, where: str = "", *, optional: bool = False,
          limit: int | None = MAX_KEY_TEXT, empty: bool = False) -> None:
    value = body.get(field)
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise _invalid(where + field, "must be a string", value)
    if "\x00" in value:
        raise _invalid(where + field, "must not contain NUL", value)
    if not value and not empty:
        raise _invalid(where + field, "must not be empty", value)
    if limit is not None and len(value) > limit:
        raise _invalid(where + field, f"must be at most {limit} characters", value)


def _integer(body: Mapping[str, Any], field: str, low: int, high: int, where: str = "") -> None:
    value = body.get(field)
    if type(value) is not int or not low <= value <= high:
        raise _invalid(where + field, f"must be an integer in [{low}, {high}]", value)


def _finite(value: object, field: str) -> None:
    if (type(value) is float or type(value) is int) and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        return  # the common case, decided without a call (NaN compares false and is refused below)
    if type(value) not in (int, float):
        raise _invalid(field, "must be a number", value)
    try:
        magnitude = abs(float(value))  # type: ignore[arg-type]
    except OverflowError:
        magnitude = math.inf
    if not magnitude <= MAX_MAGNITUDE:  # also false for NaN
        raise _invalid(field, f"must be finite and at most {MAX_MAGNITUDE:g} in size", value)


def _numbers(body: Mapping[str, Any], fields: tuple[str, ...], where: str) -> None:
    for name in fields:
        _finite(body.get(name), where + name)


def _number_map(body: Mapping[str, Any], field: str, where: str, keys: tuple[str, ...] = ()) -> None:
    value = body.get(field)
    if not isinstance(value, dict):
        raise _invalid(where + field, "must be an object of numbers", value)
    for key in keys:
        if key not in value:
            raise _invalid(where + field, f"must hold {key!r}", value)
    for key, number in value.items():
        if not ((type(number) is float or type(number) is int) and -MAX_MAGNITUDE <= number <= MAX_MAGNITUDE):
            _finite(number, f"{where}{field}.{key}")


def check_event_fields(envelope: Mapping[str, Any]) -> None:
    """The envelope fields the event archive writes (every event).

    Raises:
        PoisonMessage: ``invalid_record``, naming the field.
    """
    _uuid(envelope, "event_id")
    _uuid(envelope, "originator_id")
    _integer(envelope, "originator_version", -_INT32 - 1, _INT32)
    _integer(envelope, "log_position", 0, INT64_MAX)
    _integer(envelope, "schema_version", 1, 2)
    _integer(envelope, "timestamp_ns", _INT64_MIN, INT64_MAX)
    _text(envelope, "event_type")
    _text(envelope, "symbol", optional=True)
    _text(envelope, "store", optional=True, empty=True)
    _text(envelope, "correlation_id", optional=True, limit=None, empty=True)


def check_decision(envelope: Mapping[str, Any]) -> None:
    """The fields of a decision the decisions read model and the forensics record need.

    Raises:
        PoisonMessage: ``invalid_record``, naming the field.
    """
    _integer(envelope, "log_position", 0, INT64_MAX)
    _integer(envelope, "timestamp_ns", _INT64_MIN, INT64_MAX)
    _text(envelope, "correlation_id", optional=True, limit=None, empty=True)
    d = envelope.get("trading_decision")
    if not isinstance(d, dict):
        raise _invalid("trading_decision", "must be an object", d)
    w = "trading_decision."
    _uuid(d, "decision_id", w)
    _text(d, "symbol", w)
    _text(d, "model_version", w)
    if d.get("action") not in _ACTIONS:
        raise _invalid(w + "action", f"must be one of {', '.join(_ACTIONS)}", d.get("action"))
    if type(d.get("risk_passed")) is not bool:
        raise _invalid(w + "risk_passed", "must be true or false", d.get("risk_passed"))
    _numbers(d, ("quantity", "confidence", "price", "probability_up", "score", "regime_entropy"), w)
    _number_map(d, "regime_probs", w)
    _number_map(d, "strategy_weights", w, tuple(f"{r}_specialist" for r in _REGIMES))
    _number_map(d, "specialist_margins", w)
    features = d.get("features")
    values = features.values() if isinstance(features, dict) else features
    if not isinstance(values, (list, type({}.values()))):
        raise _invalid(w + "features", "must be an object or a list of numbers", features)
    for value in values:
        if value is not None and not (
                (type(value) is float or type(value) is int) and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE):
            _finite(value, w + "features")
    if not isinstance(d.get("risk_checks"), (dict, list)):
        raise _invalid(w + "risk_checks", "must be an object or a list", d.get("risk_checks"))


def check_fill(envelope: Mapping[str, Any]) -> None:
    """The fields of a fill the positions, decisions and forensics rows take.

    Raises:
        PoisonMessage: ``invalid_record``, naming the field.
    """
    _integer(envelope, "log_position", 0, INT64_MAX)
    _integer(envelope, "timestamp_ns", _INT64_MIN, INT64_MAX)
    _text(envelope, "timestamp", limit=64)
    f = envelope.get("payload")
    if not isinstance(f, dict):
        raise _invalid("payload", "must be an object", f)
    w = "payload."
    _uuid(f, "decision_id", w)
    _text(f, "symbol", w)
    if f.get("side") not in _SIDES:
        raise _invalid(w + "side", f"must be one of {', '.join(_SIDES)}", f.get("side"))
    _numbers(f, ("quantity", "price", "position_after"), w)
    if "commission" in f:
        _finite(f["commission"], w + "commission")
