"""Which failures are about a record (dead-letter it) and which pass (retry): pure classification."""

from __future__ import annotations

import math
from uuid import UUID

import psycopg
import pytest
from aiokafka.errors import KafkaTimeoutError, RequestTimedOutError
from hypothesis import given
from hypothesis import strategies as st
from psycopg import errors

from projections.body_checks import check_decision, check_event_fields, check_fill
from projections.failures import PoisonMessage, WholeBatchRefused, describe, is_transient, reason_of


@pytest.mark.parametrize("error", [
    errors.SerializationFailure(), errors.DeadlockDetected(), errors.AdminShutdown(),
    errors.ConnectionFailure(), errors.DiskFull(), errors.LockNotAvailable(), errors.UndefinedTable(),
    psycopg.OperationalError("the connection is closed"), psycopg.InterfaceError("no connection"),
    KafkaTimeoutError(), RequestTimedOutError(), ConnectionResetError(), TimeoutError(),
])
def test_failures_of_the_world_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    errors.UndefinedTable(), errors.UndefinedColumn(), errors.UndefinedFunction(), errors.UndefinedObject(),
    errors.SyntaxError(), errors.InsufficientPrivilege(), errors.InvalidSchemaName(),
    psycopg.ProgrammingError("the query has 3 placeholders but 2 parameters were passed"),
    psycopg.ProgrammingError("cannot adapt type 'dict'"),
    AttributeError("'NoneType' object has no attribute 'decision_id'"), NameError("row"), ImportError("shap"),
    NotImplementedError(), WholeBatchRefused("all 2 records of the batch failed alone"),
])
def test_a_worker_that_does_not_fit_its_schema_retries_instead_of_dead_lettering(error):
    """A worker deployed before its migration (or with a bug) must not dead-letter every record."""
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    errors.InvalidTextRepresentation(), errors.NotNullViolation(), errors.NumericValueOutOfRange(),
    errors.UntranslatableCharacter(), errors.UniqueViolation(), errors.ProgramLimitExceeded(),
    errors.DatatypeMismatch(), psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
    KeyError("trading_decision"), TypeError("x"),
    ValueError("nan"), OverflowError(), PoisonMessage("undecodable", "not JSON", permanent=True),
])
def test_failures_of_a_record_are_not_transient(error):
    assert not is_transient(error)
    assert reason_of(error) in {"database_refused", "processing_failed", "undecodable"}


@given(st.text())
def test_an_error_description_is_storable_text(text):
    line = describe(ValueError(text))
    assert "\x00" not in line and len(line) <= 1000
    line.encode("utf-8")  # no lone surrogates


GOOD_DECISION = {
    "log_position": 3, "timestamp_ns": 1_700_000_000_000_000_000, "correlation_id": "1-0",
    "trading_decision": {
        "decision_id": "00000000-0000-0000-0000-000000000001", "symbol": "AAA", "model_version": "abc",
        "action": "BUY", "risk_passed": True, "quantity": 3.0, "confidence": 0.5, "price": 101.5,
        "probability_up": 0.6, "score": 0.2, "regime_entropy": 0.9,
        "regime_probs": {"bull": 0.5, "bear": 0.25, "sideways": 0.25},
        "strategy_weights": {"bull_specialist": 0.5, "bear_specialist": 0.25, "sideways_specialist": 0.25},
        "specialist_margins": {"bull": 0.1}, "features": {"f": 1.0, "g": None}, "risk_checks": {"max": True},
    },
}


def test_a_good_decision_passes():
    check_decision(GOOD_DECISION)


@pytest.mark.parametrize("field,value", [
    ("quantity", None), ("quantity", math.nan), ("price", math.inf), ("price", 10**400), ("confidence", True),
    ("decision_id", "not-a-uuid"), ("symbol", "A\x00"), ("symbol", "x" * 10_000), ("action", "HODL"),
    ("risk_passed", 1), ("features", "1,2"), ("strategy_weights", {"bull_specialist": 1.0}),
])
def test_a_decision_field_out_of_shape_is_named(field, value):
    body = {**GOOD_DECISION, "trading_decision": {**GOOD_DECISION["trading_decision"], field: value}}
    with pytest.raises(PoisonMessage, match=f"trading_decision.{field}") as raised:
        check_decision(body)
    assert raised.value.reason == "invalid_record" and raised.value.permanent


def test_a_decision_without_its_body_is_refused():
    with pytest.raises(PoisonMessage, match="trading_decision must be an object"):
        check_decision({k: v for k, v in GOOD_DECISION.items() if k != "trading_decision"})


@pytest.mark.parametrize("field,value", [
    ("event_id", "x"), ("originator_id", 5), ("originator_version", 2**31), ("log_position", -1),
    ("schema_version", True), ("timestamp_ns", 2**64), ("event_type", ""), ("store", {"a": 1}),
])
def test_an_envelope_field_out_of_shape_is_named(field, value):
    envelope = {"event_id": "00000000-0000-0000-0000-000000000001", "originator_id": "00000000-0000-0000-0000-000000000002",
                "originator_version": 1, "log_position": 0, "schema_version": 1, "timestamp_ns": 0,
                "event_type": "X.v1", "symbol": "AAA", "store": "s", "correlation_id": None}
    check_event_fields(envelope)
    with pytest.raises(PoisonMessage, match=field):
        check_event_fields({**envelope, field: value})


def test_a_fill_out_of_shape_is_named():
    fill = {"log_position": 1, "timestamp_ns": 0, "timestamp": "2026-01-01T00:00:00Z",
            "payload": {"decision_id": "00000000-0000-0000-0000-000000000001", "symbol": "AAA", "side": "BUY",
                        "quantity": 1.0, "price": 2.0, "position_after": 1.0, "commission": 0.0}}
    check_fill(fill)
    with pytest.raises(PoisonMessage, match="payload.side"):
        check_fill({**fill, "payload": {**fill["payload"], "side": None}})


def _number_ok(value: object) -> bool:
    """The rule the number checks state, written the plain way (their fast paths must agree)."""
    if type(value) not in (int, float):
        return False
    try:
        return abs(float(value)) <= 1e12  # type: ignore[arg-type]
    except OverflowError:
        return False


def _uuid_ok(value: object) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        UUID(value)
    except ValueError:
        return False
    return True


_ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-2 * 10**12, max_value=2 * 10**12),
    st.sampled_from([10**12, -10**12, 10**12 + 1, 1e12, -1e12, 1e12 + 0.5, 2**53 + 1, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(), st.binary(), st.lists(st.floats(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()), st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: str(u) + "\n"), st.uuids().map(lambda u: " " + str(u)),
)


@given(st.lists(_ANY_VALUE, min_size=1, max_size=40))
def test_the_body_checks_accept_exactly_what_their_rules_say(values):
    """Every number field, map entry, feature and id: passed iff the plain rule passes it."""
    for value in values:
        d = GOOD_DECISION["trading_decision"]
        bodies = {
            "price": {**d, "price": value},
            "regime_probs": {**d, "regime_probs": {"bull": value}},
            "features": {**d, "features": [1.0, value]},
            "decision_id": {**d, "decision_id": value},
        }
        for field, body in bodies.items():
            ok = _uuid_ok(value) if field == "decision_id" else (value is None or _number_ok(value)) \
                if field == "features" else _number_ok(value)
            try:
                check_decision({**GOOD_DECISION, "trading_decision": body})
            except PoisonMessage as refused:
                assert not ok and f"trading_decision.{field}" in str(refused), (field, value)
            else:
                assert ok, (field, value)
