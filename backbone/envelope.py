"""The JSON envelope every relayed event travels in, and which topic it goes to.

Pure code: a notification of the event store (log position, originator,
version, stored topic, stored state) in, one Kafka record (topic, key,
value, headers) out.

Envelope, schema version 2 (what the relay writes)::

    {"schema_version": 2, "event_id": "<uuid>", "log_position": 42,
     "originator_id": "<uuid>", "originator_version": 7, "symbol": "GOOG",
     "topic": "Trading.Decision.Taken", "store": "glassbox:shard-0",
     "feature_names": [...],     # decisions whose model version the relay knows
     "wrapped": true,            # only when the state holds transcoder-wrapped values
     "state": {...}}             # the stored state, byte for byte as committed

Encode once: the relay splices the bytes the shard stored into the envelope
without decoding or re-encoding them: decoding and re-encoding each state was
most of the relay's CPU (see docs/design.md (Events) for the figures). The
consumers' one reader, :func:`read_envelope`, gives every
envelope, of either schema, in the shape of schema version 1::

    {"event_id": "<uuid>", "event_type": "Trading.Decision.Taken.v2",
     "schema_version": 1, "store": "glassbox:shard-0", "log_position": 42,
     "originator_id": "<uuid>", "originator_version": 7, "symbol": "GOOG",
     "timestamp": "2026-11-25T14:30:00.123456Z", "timestamp_ns": 1795...,
     "correlation_id": "<tick stream id>",
     "trading_decision": {...}   # decision events, in the seeds' shape
     "payload": {...}}           # every other event: its recorded fields

(``schema_version`` stays the one that travelled.) Records of schema 1, which
relays before schema 2 wrote (:func:`envelope_record`), stay readable.

``event_id`` is derived from (originator id, version), so re-publishing an
event gives the same id and consumers can drop the duplicate.

Packing: consecutive events of one symbol bound for one topic may travel in
one Kafka record whose value is a JSON array of envelopes (headers then say
``event_type: pack`` and the first and last log positions). One record per
event costs the relay and the consumers a Python round of work each; a pack
costs it once. Consumers read both forms (:func:`unpack`). Schema 2 packs put
each envelope on a line of its own (``,\n`` between them), so a consumer that
meets a pack that is not JSON (a corrupt stored state) reads it line by line
and dead-letters only the broken envelope (:func:`decode_pack_lines`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, NamedTuple, Sequence
from uuid import NAMESPACE_URL, UUID, uuid5

import orjson

from aggregates.desk import v1_min_trade_fraction
from aggregates.ids import uuid5_text
from edge.transcoding import OrjsonTranscoder

__all__ = [
    "ENVELOPE_SCHEMA_VERSION",
    "PACK",
    "READABLE_SCHEMA_VERSIONS",
    "RecordBuilder",
    "decode_pack_lines",
    "pack_records",
    "read_envelope",
    "unpack",
    "EventRecord",
    "StoredNotification",
    "envelope_record",
    "event_id",
    "event_id_text",
    "topic_for",
]

ENVELOPE_SCHEMA_VERSION = 2
"""The schema the relay writes."""
READABLE_SCHEMA_VERSIONS = frozenset({1, 2})
"""The schemas :func:`read_envelope` reads: old records stay readable."""
_V1 = 1
PACK = "pack"
"""The ``event_type`` header of a record that holds several envelopes."""
EVENT_NAMESPACE = uuid5(NAMESPACE_URL, "https://glassbox.invalid/event")

_DECISION = "Trading.Decision.Taken"
_ROUTES = {
    "Risk.Check.Rejected": "risk_decisions",
    "Risk.Alert.Triggered": "risk_alerts",
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


class EventRecord(NamedTuple):
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
    """The Kafka record of one stored event in schema 1, as relays before schema 2 wrote it.

    Kept to write old-shaped records in tests (they stay readable) and as the
    reference :func:`read_envelope` reshapes schema 2 to. ``feature_names(model_version)`` names a decision's feature vector; it
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
        "schema_version": _V1,
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
        ("schema_version", b"1"),
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
    try:
        names = list(feature_names(state["model_version"]))
    except KeyError:
        names = []
    return _decision_body(state, timestamp, names)


def _decision_body(state: Mapping[str, Any], timestamp: str, names: Sequence[str]) -> dict[str, Any]:
    vector = state["features"]
    if type(vector) is not list:
        vector = list(vector)
    features: dict[str, float] | list[float] = (
        dict(zip(_known_names(state.get("model_version"), names), vector)) if len(names) == len(vector)
        else list(vector)
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
        "strategy_weights": {_SPECIALISTS.get(regime) or f"{regime}_specialist": w
                             for regime, w in state["strategy_weights"].items()},
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


_SPECIALISTS = {regime: f"{regime}_specialist" for regime in ("bull", "bear", "sideways")}
_NAMES: dict[object, tuple[list[str], tuple[str, ...]]] = {}
"""Per model version, the feature names last met and the same names kept (see :func:`_known_names`)."""


def _known_names(version: object, names: Sequence[str]) -> Sequence[str]:
    # Every decision of a model version carries the same names, decoded afresh each time: new
    # strings whose hashes the features dict would compute again. Equal to the names kept for its
    # version (a comparison, no hashing), the kept ones, whose hashes are known, are used instead.
    found = _NAMES.get(version) if type(version) is str else None
    if found is not None and found[0] == names:
        return found[1]
    if type(version) is str and type(names) is list:
        if len(_NAMES) >= 64:
            _NAMES.clear()
        _NAMES[version] = (names, tuple(names))
    return names


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
    value = b"[" + b",".join(r.value for r in run) + b"]"
    return EventRecord(first.topic, first.key, value, _pack_headers(first.log_position, last.log_position, len(run), _V1),
                       last.log_position)


def _pack_headers(first: int, last: int, events: int, schema: int) -> tuple[tuple[str, bytes], ...]:
    return (
        ("event_type", b"pack"),
        ("log_position", b"%d" % first),
        ("log_position_last", b"%d" % last),
        ("events", b"%d" % events),
        ("schema_version", b"%d" % schema),
    )


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


# -- schema 2: encode once -----------------------------------------------------------------------------------------

_LINE = (b'{"schema_version":2,"event_id":"%s","log_position":%s,"originator_id":%s,"originator_version":%s,'
         b'"symbol":%s,"topic":%s,"store":%s%s,"state":%s}')
_MODEL_VERSION_KEY = b'"model_version":"'
_TYPE_MARKER = b'"_type_"'
# Every desk event's one wrapped value is its top-level timestamp, which schema 1 never unwrapped
# either (the time comes from timestamp_ns): "timestamp" tells the reader that is all there is.
_WRAPPED_TIMESTAMP = b'"timestamp":{"_type_"'
_TIMESTAMP_KEY_LENGTH = len(b'"timestamp":{')
_WRAPPED_TIMESTAMP_LENGTH = len(_WRAPPED_TIMESTAMP)
_WRAPPED = b',"wrapped":true'
_WRAPPED_TIMESTAMP_ONLY = b',"wrapped":"timestamp"'
_LINE_BREAK = b"\n"
_PACK_SEPARATOR = b",\n"


class _Originator(NamedTuple):
    id_text: bytes
    id_json: bytes
    symbol_json: bytes
    key: bytes


class _Route(NamedTuple):
    kafka_topic: str
    topic_json: bytes
    decision: bool


class RecordBuilder:
    """Schema 2 Kafka records of a batch of log entries, packed per (topic, symbol), without decoding states.

    Per event it computes the event id, formats one line around the stored
    bytes and appends it to its symbol's pack. What it needs of the state is
    cached per originator (its symbol: a desk is one symbol's, decoded once
    when the relay first meets it) and per model version (feature names).
    A state with a raw line break (never written by orjson, so corrupt or
    foreign) travels alone in a record of its own, so it cannot break a
    pack's line framing.
    """

    def __init__(
        self, store: str, feature_names: Callable[[str], Sequence[str]], max_events: int, max_bytes: int
    ) -> None:
        self._store_json = orjson.dumps(store)
        self._feature_names = feature_names
        self._max_events = max(max_events, 1)
        self._max_bytes = max_bytes
        self._originators: dict[bytes, _Originator] = {}
        self._routes: dict[bytes, _Route] = {}
        self._names: dict[bytes, bytes] = {}

    def build(self, flat: Sequence[bytes]) -> list[EventRecord]:
        """The records of log entries read flat (:meth:`edge.eventstore.RedisApplicationRecorder.read_log_flat`:
        entry id, originator id, version, topic, state, ...), ordered by each record's last log position."""
        # A run: [lines, first position, last position, bytes]; keyed by symbol alone for the
        # default topic (most events), by (topic, symbol) otherwise.
        runs: dict[bytes | tuple[str, bytes], list[Any]] = {}
        done: list[EventRecord] = []
        line_template, store_json = _LINE, self._store_json
        originators, routes = self._originators, self._routes
        max_events, max_bytes = self._max_events, self._max_bytes
        it = iter(flat)
        for entry_id, originator_id, version, topic, state in zip(it, it, it, it, it):
            facts = originators.get(originator_id) or self._originator(originator_id, state)
            route = routes.get(topic) or self._route(topic)
            extra = self._names_of(state) if route.decision else b""
            wrapped_at = state.find(_WRAPPED_TIMESTAMP)
            if wrapped_at >= 0:
                if state.find(_TYPE_MARKER) != wrapped_at + _TIMESTAMP_KEY_LENGTH or \
                        state.find(_TYPE_MARKER, wrapped_at + _WRAPPED_TIMESTAMP_LENGTH) >= 0:
                    extra += _WRAPPED
                else:
                    extra += _WRAPPED_TIMESTAMP_ONLY
            elif _TYPE_MARKER in state:
                extra += _WRAPPED
            position = entry_id[:-2]
            line = line_template % (
                uuid5_text(_EVENT_NAMESPACE_BYTES, facts.id_text + b"/" + version).encode(), position,
                facts.id_json, version, facts.symbol_json, route.topic_json, store_json, extra, state,
            )
            group = facts.key if route.kafka_topic == _DEFAULT_TOPIC else (route.kafka_topic, facts.key)
            if _LINE_BREAK in state:
                done.append(_v2_record(group, [line], position, position))
                continue
            run = runs.get(group)
            if run is None:
                runs[group] = [[line], position, position, len(line)]
            elif len(run[0]) >= max_events or run[3] + len(line) > max_bytes:
                done.append(_v2_record(group, *run[:3]))
                runs[group] = [[line], position, position, len(line)]
            else:
                run[0].append(line)
                run[2] = position
                run[3] += len(line)
        done.extend(_v2_record(group, *run[:3]) for group, run in runs.items())
        done.sort(key=_last_position)
        return done

    def _originator(self, originator_id: bytes, state: bytes) -> _Originator:
        text = originator_id.decode(errors="replace")
        try:
            decoded = orjson.loads(state)
        except orjson.JSONDecodeError:
            decoded = None  # the consumers dead-letter it; its originator is looked at again next time
        symbol = str(decoded.get("symbol", text)) if isinstance(decoded, dict) else text
        facts = _Originator(originator_id, orjson.dumps(text), orjson.dumps(symbol), symbol.encode())
        if decoded is not None:
            self._originators[originator_id] = facts
        return facts

    def _route(self, topic: bytes) -> _Route:
        text = topic.decode(errors="replace")
        route = _Route(topic_for(text), orjson.dumps(text), text == _DECISION)
        self._routes[topic] = route
        return route

    def _names_of(self, state: bytes) -> bytes:
        # The model version is read from the bytes: a JSON key can only appear as a key (a quote
        # inside a string is escaped), and a decision's nested objects have no such key. Any doubt
        # (not exactly once) leaves the names out: the reader then keeps the vector as a list.
        at = state.find(_MODEL_VERSION_KEY)
        if at < 0 or state.find(_MODEL_VERSION_KEY, at + 1) >= 0:
            return b""
        start = at + len(_MODEL_VERSION_KEY)
        version = state[start:state.find(b'"', start)]
        names = self._names.get(version)
        if names is None:
            try:
                names = b',"feature_names":' + orjson.dumps(list(self._feature_names(version.decode())))
            except (KeyError, UnicodeDecodeError):
                return b""  # unknown here (yet): asked again next time, as schema 1 did
            self._names[version] = names
        return names


def _last_position(record: EventRecord) -> int:
    return record.log_position


def _v2_record(group: bytes | tuple[str, bytes], lines: list[bytes], first: bytes, last: bytes) -> EventRecord:
    topic, key = (_DEFAULT_TOPIC, group) if type(group) is bytes else group
    last_position = int(last)
    return EventRecord(topic, key, b"[" + _PACK_SEPARATOR.join(lines) + b"]",
                       _pack_headers(int(first), last_position, len(lines), ENVELOPE_SCHEMA_VERSION), last_position)


class Undecodable(NamedTuple):
    """One line of a pack that is not JSON (see :func:`decode_pack_lines`)."""

    line: bytes
    reason: str


def decode_pack_lines(value: bytes) -> list[Any] | None:
    """The envelopes of a schema 2 pack that is not JSON as a whole, line by line; None if it is no such pack.

    A line that is not JSON comes back as :class:`Undecodable`, so only that
    envelope is dead-lettered.
    """
    if not (value.startswith(b"[") and value.endswith(b"]") and _PACK_SEPARATOR in value):
        return None
    items: list[Any] = []
    for line in value[1:-1].split(_PACK_SEPARATOR):
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as error:
            items.append(Undecodable(line, f"not JSON ({error})"))
    return items


_TRANSCODER = OrjsonTranscoder()
_V2_FIELDS = ("event_id", "log_position", "originator_id", "originator_version", "symbol", "topic", "state")
_V2_KEYS = frozenset(_V2_FIELDS)


def read_envelope(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """An envelope of any readable schema in the shape of schema 1 (the one reader every consumer uses).

    Schema 1 is returned as it is. Schema 2 is reshaped from its stored
    state: event type, time, correlation id and the decision body or payload.

    Raises:
        ValueError: a schema 2 envelope without its fields, or whose state is not an object.
    """
    if item.get("schema_version") != ENVELOPE_SCHEMA_VERSION:
        return item
    if not _V2_KEYS <= item.keys():
        missing = [k for k in _V2_FIELDS if k not in item]
        raise ValueError(f"a schema 2 envelope without {missing}")
    state = item["state"]
    if not isinstance(state, dict):
        raise ValueError(f"the stored state must be an object, not {type(state).__name__}")
    timestamp_ns = _int_or_zero(state.get("timestamp_ns"))
    wrapped = item.get("wrapped")
    if wrapped == "timestamp" and type(state.get("timestamp")) is dict:
        timestamp_ns = timestamp_ns or _ns_of(state["timestamp"])
    elif wrapped:
        # Values the store's transcoder wrapped (datetimes, UUIDs, decimals) read as schema 1 had
        # them: decoded, then written by orjson (strings).
        decoded = _TRANSCODER.decode(orjson.dumps(state))
        timestamp_ns = timestamp_ns or _ns_of(decoded.get("timestamp"))
        state = orjson.loads(orjson.dumps(decoded, default=str))
    else:
        timestamp_ns = timestamp_ns or _ns_of(state.get("timestamp"))
    topic = str(item["topic"])
    timestamp = _iso(timestamp_ns)
    envelope: dict[str, Any] = {
        "event_id": item["event_id"],
        "event_type": f"{topic}.v{_int_or_zero(state.get('class_version', 1))}",
        "schema_version": ENVELOPE_SCHEMA_VERSION,
        "store": item.get("store"),
        "log_position": item["log_position"],
        "originator_id": item["originator_id"],
        "originator_version": item["originator_version"],
        "symbol": item["symbol"],
        "timestamp": timestamp,
        "timestamp_ns": timestamp_ns,
        "correlation_id": state.get("correlation_id"),
    }
    if topic == _DECISION:
        try:
            envelope["trading_decision"] = _decision_body(state, timestamp, item.get("feature_names") or ())
        except (KeyError, TypeError) as error:
            raise ValueError(f"a decision without its fields: {error!r}") from None
    else:
        envelope["payload"] = {k: v for k, v in state.items() if k not in _ENVELOPE_FIELDS}
    return envelope


def _int_or_zero(value: object) -> int:
    return value if type(value) is int else 0
