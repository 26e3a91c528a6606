"""The event envelope and topic routing: pure functions."""

from __future__ import annotations

from uuid import UUID

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.envelope import (
    EventRecord,
    RecordBuilder,
    StoredNotification,
    decode_pack_lines,
    envelope_record,
    event_id,
    event_id_text,
    pack_records,
    read_envelope,
    topic_for,
    unpack,
)
from edge.transcoding import OrjsonTranscoder

DESK = UUID("12345678-1234-5678-1234-567812345678")
DECISION_STATE = {
    "timestamp_ns": 1_700_000_000_123_456_789, "correlation_id": "1700000000123-0",
    "decision_id": "d-1", "symbol": "GOOG", "price": 101.5, "size": 3.0, "bid": None, "ask": None,
    "action": "BUY", "quantity": 10.0, "confidence": 0.7, "probability_up": 0.7, "score": 0.85,
    "regime_probs": {"bull": 0.6, "bear": 0.1, "sideways": 0.3}, "regime_entropy": 0.9,
    "strategy_weights": {"bull": 0.6, "bear": 0.1, "sideways": 0.3},
    "specialist_margins": {"bull": 1.0, "bear": -0.2, "sideways": 0.1},
    "features": [0.1, 0.2], "model_version": "m1", "risk_passed": True, "risk_checks": [],
}


def names(version: str) -> tuple[str, ...]:
    if version != "m1":
        raise KeyError(version)
    return ("ret_1", "rsi_14")


def test_routes() -> None:
    assert topic_for("Trading.Decision.Taken") == "trading_decisions"
    assert topic_for("Trading.Order.Filled") == "trading_decisions"
    assert topic_for("Risk.Check.Rejected") == "risk_decisions"
    assert topic_for("Regime.Probabilities.Changed") == "regime_changes"
    assert topic_for("Model.Version.Updated") == "model_updates"


def test_decision_envelope_in_the_seeds_shape() -> None:
    record = envelope_record(StoredNotification(42, DESK, 7, "Trading.Decision.Taken", DECISION_STATE), "s0", names)
    assert (record.topic, record.key, record.log_position) == ("trading_decisions", b"GOOG", 42)
    assert dict(record.headers) == {"event_type": b"Trading.Decision.Taken.v1", "log_position": b"42", "schema_version": b"1"}
    envelope = orjson.loads(record.value)
    assert envelope["event_id"] == str(event_id(DESK, 7))
    assert envelope["timestamp"] == "2023-11-14T22:13:20.123456Z"
    body = envelope["trading_decision"]
    assert body["features"] == {"ret_1": 0.1, "rsi_14": 0.2}
    assert body["strategy_weights"] == {"bull_specialist": 0.6, "bear_specialist": 0.1, "sideways_specialist": 0.3}
    assert body["decision_id"] == "d-1" and body["model_version"] == "m1"


def test_unknown_model_version_keeps_the_vector_as_a_list() -> None:
    state = {**DECISION_STATE, "model_version": "unknown"}
    body = orjson.loads(envelope_record(StoredNotification(1, DESK, 1, "Trading.Decision.Taken", state), "s0", names).value)
    assert body["trading_decision"]["features"] == [0.1, 0.2]


def test_other_events_carry_their_fields_as_payload_and_ids_are_stable() -> None:
    state = {"timestamp_ns": 5, "correlation_id": "c", "symbol": "EURUSD", "side": "SELL", "reasons": ["leverage"]}
    record = envelope_record(StoredNotification(3, DESK, 2, "Risk.Check.Rejected", state), "s0", names)
    envelope = orjson.loads(record.value)
    assert record.topic == "risk_decisions"
    assert envelope["payload"] == {"symbol": "EURUSD", "side": "SELL", "reasons": ["leverage"]}
    assert event_id(DESK, 2) == event_id(str(DESK), 2) != event_id(DESK, 3)


def test_packs_group_a_symbols_records_in_order_within_limits() -> None:
    def record(position: int, key: bytes, topic: str = "trading_decisions") -> EventRecord:
        return EventRecord(topic, key, orjson.dumps({"p": position}), (), position)

    records = [record(1, b"A"), record(2, b"B"), record(3, b"A"), record(4, b"A", "risk_decisions"), record(5, b"A")]
    packed = pack_records(records, max_events=2, max_bytes=10_000)
    by_key = [(r.topic, r.key, unpack(orjson.loads(r.value))) for r in packed]
    assert (("trading_decisions", b"A", [{"p": 1}, {"p": 3}])) in by_key
    assert ("trading_decisions", b"A", {"p": 5}) in [(t, k, v[0]) for t, k, v in by_key if len(v) == 1]
    assert sum(len(v) for _, _, v in by_key) == 5
    pack = next(r for r in packed if len(unpack(orjson.loads(r.value))) == 2)
    assert dict(pack.headers)["event_type"] == b"pack" and dict(pack.headers)["log_position_last"] == b"3"
    assert pack_records(records, max_events=1, max_bytes=10) == records
    assert len(pack_records(records, max_events=100, max_bytes=10)) == 5  # every value is over the byte limit


def test_fast_event_id_text_equals_the_uuid5() -> None:
    for originator, version in [(DESK, 1), (str(DESK), 7), ("EURUSD", 123_456)]:
        assert event_id_text(originator, version) == str(event_id(originator, version))


def test_timestamp_still_in_the_stores_wrapping_is_read() -> None:
    state = {**DECISION_STATE, "timestamp_ns": 0,
             "timestamp": {"_type_": "datetime", "_data_": "2023-11-14T22:13:20.123456+00:00"}}
    envelope = orjson.loads(envelope_record(StoredNotification(1, DESK, 1, "Trading.Decision.Taken", state), "s0", names).value)
    assert envelope["timestamp"] == "2023-11-14T22:13:20.123456Z"


def test_a_decision_carries_its_no_trade_band_and_a_v1_one_the_band_it_was_decided_with() -> None:
    v2 = {**DECISION_STATE, "class_version": 2, "min_trade_fraction": 0.05}
    body = orjson.loads(envelope_record(StoredNotification(1, DESK, 1, "Trading.Decision.Taken", v2), "s0", names).value)
    assert body["event_type"] == "Trading.Decision.Taken.v2" and body["trading_decision"]["min_trade_fraction"] == 0.05
    v1 = orjson.loads(envelope_record(StoredNotification(2, DESK, 2, "Trading.Decision.Taken", DECISION_STATE),
                                      "s0", names).value)
    assert v1["event_type"] == "Trading.Decision.Taken.v1" and v1["trading_decision"]["min_trade_fraction"] == 0.01
    no_model = {**DECISION_STATE, "model_version": ""}
    strategy = orjson.loads(envelope_record(StoredNotification(3, DESK, 3, "Trading.Decision.Taken", no_model),
                                            "s0", names).value)
    assert strategy["trading_decision"]["min_trade_fraction"] == 0.0


# -- schema 2: the relay splices stored bytes; read_envelope gives schema 1's shape -----------------------------------

def _flat(entries: list[tuple[int, str, int, str, bytes]]) -> list[bytes]:
    """Log entries as RedisApplicationRecorder.read_log_flat returns them."""
    return [x for p, o, v, t, s in entries for x in (b"%d-0" % p, o.encode(), b"%d" % v, t.encode(), s)]


def _read_all(records: list[EventRecord]) -> list[dict]:
    return [dict(read_envelope(item)) for r in records for item in unpack(orjson.loads(r.value))]


def _as_schema_1(position: int, originator: str, version: int, topic: str, state: bytes) -> dict:
    decoded = OrjsonTranscoder().decode(state)
    envelope = orjson.loads(envelope_record(StoredNotification(position, originator, version, topic, decoded), "s0",
                                            names).value)
    envelope["schema_version"] = 2
    return envelope


SCHEMA_2_CASES = [
    ("Trading.Decision.Taken", {**DECISION_STATE, "class_version": 2, "min_trade_fraction": 0.05}),
    ("Trading.Decision.Taken", {**DECISION_STATE, "model_version": "unknown"}),
    ("Trading.Decision.Taken", DECISION_STATE),
    ("Risk.Check.Rejected", {"timestamp_ns": 5, "correlation_id": "c", "symbol": "GOOG", "side": "SELL", "reasons": ["x"]}),
    ("Trading.Desk.Opened", {"timestamp": {"_type_": "datetime_iso", "_data_": "2023-11-14T22:13:20.123456+00:00"},
                             "timestamp_ns": 7, "symbol": "GOOG"}),
    ("Trading.Desk.Opened", {"symbol": "GOOG", "timestamp": {"_type_": "datetime_iso",
                                                             "_data_": "2023-11-14T22:13:20.123456+00:00"},
                             "opened_by": {"_type_": "uuid_hex", "_data_": UUID(int=5).hex}}),
    ("Model.Version.Updated", {"timestamp_ns": 9, "version": "m2"}),
]


def test_schema_2_reads_as_the_schema_1_envelope_of_the_same_stored_event() -> None:
    # One desk's events, and the model's (an originator with no symbol: keyed by its id).
    entries = [(i + 1, str(DESK) if topic.startswith("Trading") or topic.startswith("Risk") else "model", i + 1, topic,
                orjson.dumps(state)) for i, (topic, state) in enumerate(SCHEMA_2_CASES)]
    records = RecordBuilder("s0", names, 100, 1_000_000).build(_flat(entries))
    read = sorted(_read_all(records), key=lambda e: e["log_position"])
    assert read == [_as_schema_1(*entry) for entry in entries]
    decision = next(r for r in records if r.topic == "trading_decisions")
    assert dict(decision.headers)["schema_version"] == b"2" and decision.key == b"GOOG"
    assert b'"state":' + entries[0][4] in decision.value  # the stored bytes, spliced as they were
    assert read[0]["trading_decision"]["features"] == {"ret_1": 0.1, "rsi_14": 0.2}
    assert read[1]["trading_decision"]["features"] == [0.1, 0.2]  # an unknown model version: a list, as in schema 1


def test_schema_1_records_stay_readable_as_they_are() -> None:
    old = orjson.loads(envelope_record(StoredNotification(1, DESK, 1, "Trading.Decision.Taken", DECISION_STATE),
                                       "s0", names).value)
    assert read_envelope(old) is old and old["schema_version"] == 1


def test_schema_2_packs_keep_each_symbols_order_within_limits() -> None:
    def state(symbol: str) -> bytes:
        return orjson.dumps({"timestamp_ns": 1, "symbol": symbol, "reasons": []})

    originators = {s: str(UUID(int=i + 1)) for i, s in enumerate("ABC")}
    entries = [(p, originators[s], p, t, state(s)) for p, (s, t) in enumerate(
        [("A", "Trading.Order.Filled"), ("B", "Trading.Order.Filled"), ("A", "Risk.Check.Rejected")] * 20, start=1)]
    records = RecordBuilder("s0", names, 7, 1_000_000).build(_flat(entries))
    assert [r.log_position for r in records] == sorted(r.log_position for r in records)
    assert all(1 <= int(dict(r.headers)["events"]) <= 7 for r in records)
    seen = []
    for r in records:
        positions = [e["log_position"] for e in _read_all([r])]
        assert positions == sorted(positions) and {e["symbol"] for e in _read_all([r])} == {r.key.decode()}
        assert (int(dict(r.headers)["log_position"]), int(dict(r.headers)["log_position_last"])) == \
            (positions[0], positions[-1])
        seen += positions
    assert sorted(seen) == list(range(1, 61))
    assert len(RecordBuilder("s0", names, 100, 10).build(_flat(entries))) == 60  # every line is over the byte limit


def test_a_broken_stored_state_breaks_only_its_own_line_of_a_pack() -> None:
    good = orjson.dumps({"timestamp_ns": 1, "symbol": "A", "side": "BUY"})
    entries = [(1, "desk-a", 1, "Trading.Order.Filled", good), (2, "desk-a", 2, "Trading.Order.Filled", b'{"side":'),
               (3, "desk-a", 3, "Trading.Order.Filled", good), (4, "desk-a", 4, "Trading.Order.Filled", b'{"a\n":1}')]
    records = RecordBuilder("s0", names, 100, 1_000_000).build(_flat(entries))
    pack, alone = records  # a state with a raw line break travels alone: it cannot break a pack's lines
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(pack.value)
    items = decode_pack_lines(pack.value)
    assert [type(i).__name__ for i in items] == ["dict", "Undecodable", "dict"]
    assert [read_envelope(items[0])["log_position"], read_envelope(items[2])["log_position"]] == [1, 3]
    assert dict(alone.headers)["log_position"] == b"4" and decode_pack_lines(alone.value) is None


def test_a_schema_2_state_that_is_no_object_is_refused_with_a_reason() -> None:
    for state in (b"[1]", b'"x"', b"null"):
        item = orjson.loads(RecordBuilder("s0", names, 100, 1_000).build(_flat([(1, "o", 1, "Trading.Order.Filled", state)]))[0].value)[0]
        with pytest.raises(ValueError, match="must be an object"):
            read_envelope(item)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@given(st.lists(st.tuples(st.sampled_from(["Trading.Order.Filled", "Risk.Check.Rejected", "Regime.Probabilities.Changed"]),
                          st.dictionaries(st.text(max_size=12), _json_values, max_size=6),
                          st.binary(max_size=30) | st.none()),
                min_size=1, max_size=30))
def test_any_stored_states_read_back_as_schema_1_and_garbage_spoils_only_itself(cases) -> None:
    entries, expected = [], {}
    for i, (topic, state, garbage) in enumerate(cases, start=1):
        state = {k: v for k, v in state.items() if k not in ("timestamp", "timestamp_ns", "class_version", "symbol")}
        stored = garbage if garbage is not None else orjson.dumps({**state, "timestamp_ns": i, "symbol": "S"})
        entries.append((i, "desk", i, topic, stored))
        try:
            decoded = orjson.loads(stored)
        except orjson.JSONDecodeError:
            continue
        if isinstance(decoded, dict) and b'"_type_"' not in stored:
            expected[i] = _as_schema_1(i, "desk", i, topic, stored)
    read = {}
    for record in RecordBuilder("s0", names, 8, 1_000_000).build(_flat(entries)):
        try:
            items = unpack(orjson.loads(record.value))
        except orjson.JSONDecodeError:
            items = decode_pack_lines(record.value) or []
        for item in items:
            if isinstance(item, dict):
                try:
                    envelope = read_envelope(item)
                except ValueError:
                    continue
                read[envelope["log_position"]] = dict(envelope)
    for position, envelope in expected.items():  # every good event reads back, as schema 1 would have it
        assert read[position] == {**envelope, "symbol": read[position]["symbol"]}
