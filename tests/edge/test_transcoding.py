"""The orjson transcoder writes what eventsourcing's JSONTranscoder writes (up to float spelling)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from uuid import uuid4

import pytest
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError

from edge.transcoding import OrjsonTranscoder

STAMP = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
VALUES = [
    "🐈 a\"b",
    {},
    {"a": 1, "b": [1.5, -2.5e-9, 1e300, True, None]},
    {"timestamp": STAMP, "features": [0.1, 0.2], "probs": {"bull": 0.2, "bear": 0.8}},
    {"id": uuid4(), "amount": Decimal("1.10"), "nested": {"ids": [uuid4()], "at": [STAMP]}},
    {"_type_": "not-a-wrapper"},
    [[], {}, [{"x": STAMP}]],
    {"at": STAMP, "later": STAMP, "deep": {"at": STAMP}, "plain": {"k": 1}},  # top level and nested
    {"at": STAMP, "text": 'a "_type_" inside a string'},
]


@pytest.fixture
def standard():
    transcoder = JSONTranscoder()
    for transcoding in OrjsonTranscoder().names.values():
        transcoder.register(transcoding)
    return transcoder


@pytest.mark.parametrize("value", VALUES)
def test_same_json_as_the_standard_transcoder_and_round_trips(standard, value):
    fast = OrjsonTranscoder()
    assert json.loads(fast.encode(value)) == json.loads(standard.encode(value))
    assert fast.decode(standard.encode(value)) == value
    assert standard.decode(fast.encode(value)) == value


def test_reads_legacy_ascii_escaped_json():
    assert OrjsonTranscoder().decode(b'"\\ud83d\\udc08"') == "🐈"


def test_unregistered_types_are_refused_like_the_standard_one():
    with pytest.raises(TranscodingNotRegisteredError):
        OrjsonTranscoder().encode({"x": object()})


def test_plain_events_are_stored_exactly_as_the_standard_mapper_stores_them(policy):
    """The fast mapper's stored event — topic, id, version and state bytes — is eventsourcing's own."""
    from eventsourcing.persistence import Mapper

    from aggregates.desk import SymbolDesk
    from aggregates.risk import OthersView, RiskLimits
    from edge.transcoding import PlainEventMapper

    desk = SymbolDesk.open("AAA", correlation_id="1-0", timestamp_ns=1_700_000_000_123_456_789)
    for i, (ts_ns, position) in enumerate([(1_700_000_000_200_000_000, 0.0), (1_700_000_001_000_000_000, 5e5)]):
        desk.position = position  # a desk far over its limits: the order is refused (Risk.Check.Rejected)
        desk.decide(tick_id=f"{i + 2}-0", ts_ns=ts_ns, price=100.0, size=1.0, bid=None, ask=99.5,
                    features=[0.01 * (k + 1) for k in range(20)], policy=policy, others=OthersView(1e6),
                    limits=RiskLimits())
    desk.checkpoint_features([1.0, 2.5], "9-0", 1_700_000_002_000_000_000)
    events = desk.collect_events()
    assert len({type(e) for e in events}) >= 3
    fast, standard = PlainEventMapper(OrjsonTranscoder()), Mapper(OrjsonTranscoder())
    for event in events:
        assert fast.to_stored_event(event) == standard.to_stored_event(event)
