"""The event envelope and topic routing: pure functions."""

from __future__ import annotations

from uuid import UUID

import orjson

from backbone.envelope import (
    EventRecord,
    StoredNotification,
    envelope_record,
    event_id,
    event_id_text,
    pack_records,
    topic_for,
    unpack,
)

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
