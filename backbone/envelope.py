"""The JSON envelope every relayed event travels in, and which topic it goes to.

Pure code: a notification of the event store (log position, originator,
version, stored topic, stored state) in, one Kafka record (topic, key,
value, headers) out.

Envelope, schema version 1::

    {"event_id": "<uuid>", "event_type": "Trading.Decision.Taken.v2",
     "schema_version": 1, "store": "glassbox:shard-0", "log_position": 42,
     "originator_id": "<uuid>", "originator_version": 7, "symbol": "GOOG",
     "timestamp": "2026-11-25T14:30:00.123456Z", "timestamp_ns": 1795...,
     "correlation_id": "<tick stream id>",
     "trading_decision": {...}   # decision events, in the seeds' shape
     "payload": {...}}           # every other event: its recorded fields

``event_id`` is derived from (originator id, version), so re-publishing an
event gives the same id and consumers can drop the duplicate.

Packing: consecutive events of one symbol bound for one topic may travel in
one Kafka record whose value is a JSON array of envelopes (headers then say
``event_type: pack`` and the first and last log positions). One record per
event costs the relay and the consumers a Python round of work each; a pack
costs it once. Consumers read both forms (:func:`unpack`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence
from uuid import NAMESPACE_URL, UUID, uuid5

import orjson

from aggregates.desk import v1_min_trade_fraction
from aggregates.ids import uuid5_text

__all__ = [
    "ENVELOPE_SCHEMA_VERSION",
    "PACK",
    "pack_records",
    "unpack",
    "EventRecord",
    "StoredNotification",
    "envelope_record",
    "event_id",
    "event_id_text",
    "topic_for",
]

ENVELOPE_SCHEMA_VERSION = 1
PACK = "pack"
"""The ``event_type`` header of a record that holds several envelopes."""
EVENT_NAMESPACE = uuid5(NAMESPACE_URL, "https://glassbox.invalid/event")

_DECISION = "Trading.Decision.Taken"
_ROUTES = {
    "Risk.Check.Rejected": "risk_decisions",
    "Regime.Probabilities.Changed": "regime_changes",
    "Strategy.Weights.Corrected": "regime_changes",
}
# Everything else of a desk (its opening, decisions, fills, feature checkpoints)
# shares the symbol's partition of trading_decisions, so a consumer sees a
# fill after the decision that caused it.
_DEFAULT_TOPIC = "trading_decisions"
_MODEL_PREFIX = "Model."


@dataclass(frozen=True)
class StoredNotification:
    """What the relay read from the event store's application log."""

    log_position: int
    originator_id: UUID | str
    originator_version: int
    topic: str
    """The stored topic, e.g. ``Trading.Decision.Taken`` (no version)."""
    state: Mapping[str, Any]
    """The event's recorded fields, decoded."""


@dataclass(frozen=True)
class EventRecord:
    """One Kafka record: where it goes and what it carries."""

    topic: str
    """Topic name before any prefix."""
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    log_position: int


def event_id(originator_id: UUID | str, version: int) -> UUID:
    """The stable id of an event: the same every time it is (re)published."""
    return uuid5(EVENT_NAMESPACE, f"{originator_id}/{version}")


_EVENT_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes


def event_id_text(originator_id: UUID | str, version: int) -> str:
    """``str(event_id(...))`` in a third of the time (the relay computes one per event)."""
    return uuid5_text(_EVENT_NAMESPACE_BYTES, f"{originator_id}/{version}")


def topic_for(stored_topic: str) -> str:
    """The Kafka topic (before prefix) an event of this stored topic goes to."""
    if stored_topic.startswith(_MODEL_PREFIX):
        return "model_updates"
    return _ROUTES.get(stored_topic, _DEFAULT_TOPIC)


def envelope_record(
    notification: StoredNotification,
    store: str,
    feature_names: Callable[[str], Sequence[str]],
) -> EventRecord:
    """The Kafka record of one stored event.

    ``feature_names(model_version)`` names a decision's feature vector; it
    may raise ``KeyError`` for an unknown version, and then the vector stays
    a list (the forensics projection dead-letters it with that reason).
    """
    state = notification.state
    class_version = int(state.get("class_version", 1))
    event_type = f"{notification.topic}.v{class_version}"
    symbol = str(state.get("symbol", notification.originator_id))
    timestamp_ns = int(state.get("timestamp_ns", 0)) or _ns_of(state.get("timestamp"))
    envelope: dict[str, Any] = {
        "event_id": event_id_text(notification.originator_id, notification.originator_version),
        "event_type": event_type,
        "schema_version": ENVELOPE_SCHEMA_VERSION,
        "store": store,
        "log_position": notification.log_position,
        "originator_id": str(notification.originator_id),
        "originator_version": notification.originator_version,
        "symbol": symbol,
        "timestamp": _iso(timestamp_ns),
        "timestamp_ns": timestamp_ns,
        "correlation_id": state.get("correlation_id"),
    }
    if notification.topic == _DECISION:
        envelope["trading_decision"] = trading_decision(state, envelope["timestamp"], feature_names)
    else:
        envelope["payload"] = {k: v for k, v in state.items() if k not in _ENVELOPE_FIELDS}
    headers = (
        ("event_type", event_type.encode()),
        ("log_position", str(notification.log_position).encode()),
        ("schema_version", str(ENVELOPE_SCHEMA_VERSION).encode()),
    )
    return EventRecord(
        topic_for(notification.topic), symbol.encode(), orjson.dumps(envelope, default=str), headers,
        notification.log_position,
    )


_ENVELOPE_FIELDS = frozenset({"timestamp", "timestamp_ns", "correlation_id", "class_version"})


def trading_decision(
    state: Mapping[str, Any], timestamp: str, feature_names: Callable[[str], Sequence[str]]
) -> dict[str, Any]:
    """A decision in the shape the seeds' consumers expect, plus what forensics needs to redo it.

    ``features`` maps names to values in the model's feature order (a list
    when the model version's names are unknown here).
    """
    vector = list(state["features"])
    try:
        names = list(feature_names(state["model_version"]))
    except KeyError:
        names = []
    features: dict[str, float] | list[float] = (
        dict(zip(names, vector, strict=True)) if len(names) == len(vector) else vector
    )
    return {
        "event_type": "trading_decision",
        "decision_id": state["decision_id"],
        "timestamp": timestamp,
        "symbol": state["symbol"],
        "action": state["action"],
        "quantity": state["quantity"],
        "confidence": state["confidence"],
        "regime_probs": state["regime_probs"],
        "strategy_weights": {f"{regime}_specialist": w for regime, w in state["strategy_weights"].items()},
        "features": features,
        "risk_checks": state["risk_checks"],
        "risk_passed": state["risk_passed"],
        "model_version": state["model_version"],
        "price": state["price"],
        "size": state["size"],
        "probability_up": state["probability_up"],
        "score": state["score"],
        "regime_entropy": state["regime_entropy"],
        "specialist_margins": state["specialist_margins"],
        # Stored state is never upcast on its way out: a v1 decision gets the band it was decided with.
        "min_trade_fraction": state["min_trade_fraction"] if "min_trade_fraction" in state
        else v1_min_trade_fraction(state),
    }


def pack_records(records: Sequence[EventRecord], max_events: int, max_bytes: int) -> list[EventRecord]:
    """Group records of the same (topic, key) into packs, keeping each key's order.

    A pack holds at most ``max_events`` envelopes and ``max_bytes`` of value;
    a lone record stays as it is. Records of different keys may be reordered
    relative to each other (Kafka orders per partition only; a key's events
    keep their order).
    """
    if max_events <= 1:
        return list(records)
    groups: dict[tuple[str, bytes], list[list[EventRecord]]] = {}
    sizes: dict[tuple[str, bytes], int] = {}
    for record in records:
        key = (record.topic, record.key)
        runs = groups.setdefault(key, [[]])
        if runs[-1] and (len(runs[-1]) >= max_events or sizes[key] + len(record.value) > max_bytes):
            runs.append([])
            sizes[key] = 0
        runs[-1].append(record)
        sizes[key] = sizes.get(key, 0) + len(record.value)
    packed = [_pack(run) for runs in groups.values() for run in runs if run]
    packed.sort(key=lambda r: r.log_position)
    return packed


def _pack(run: list[EventRecord]) -> EventRecord:
    if len(run) == 1:
        return run[0]
    first, last = run[0], run[-1]
    headers = (
        ("event_type", PACK.encode()),
        ("log_position", str(first.log_position).encode()),
        ("log_position_last", str(last.log_position).encode()),
        ("events", str(len(run)).encode()),
        ("schema_version", str(ENVELOPE_SCHEMA_VERSION).encode()),
    )
    value = b"[" + b",".join(r.value for r in run) + b"]"
    return EventRecord(first.topic, first.key, value, headers, last.log_position)


def unpack(decoded: object) -> list[Any]:
    """The envelopes of one decoded record value (a pack or a single envelope)."""
    return decoded if isinstance(decoded, list) else [decoded]


def _iso(timestamp_ns: int) -> str:
    seconds, ns = divmod(timestamp_ns, 1_000_000_000)
    return f"{_iso_seconds(seconds)}.{ns // 1000:06d}Z"


@functools.lru_cache(maxsize=4_096)
def _iso_seconds(seconds: int) -> str:
    # Events come in time order, so most share a second with the one before.
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _ns_of(value: object) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000) * 1000
    if isinstance(value, Mapping) and value.get("_type_") == "datetime":  # still in the store's wrapping
        return _ns_of(datetime.fromisoformat(str(value["_data_"])))
    return 0
