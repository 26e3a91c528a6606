"""The live stream's protocol (pure code): the subscribe message and a client's bounded, coalescing queue."""

import orjson
import pytest

from api.stream_protocol import (
    CLOSE_BAD_MESSAGE,
    ClientQueue,
    Resume,
    StreamRefusal,
    Subscription,
    decision_summary,
    encode_message,
    parse_subscribe,
)


def test_a_subscribe_message_is_read_field_by_field() -> None:
    sub = parse_subscribe('{"type": "subscribe", "token": "t", "kinds": ["decision", "alert"], "symbols": ["AAPL"],'
                          ' "resume": {"epoch": "ab12", "seq": 7}}')
    assert sub == Subscription(frozenset({"decision", "alert"}), frozenset({"AAPL"}), b"t", Resume("ab12", 7))
    assert sub.wants("decision", "AAPL") and not sub.wants("decision", "MSFT") and not sub.wants("portfolio", "AAPL")
    assert parse_subscribe('{"type": "subscribe", "kinds": ["system"]}').wants("system", None)


@pytest.mark.parametrize("raw", [
    '{"type": "subscribe", "kinds": ["decision"], "extra": 1}',
    '{"type": "subscribe", "kinds": ["decision"], "symbols": ["has space"]}',
    '{"type": "subscribe", "kinds": ["decision"], "token": 5}',
    '{"type": "subscribe", "kinds": ["decision"], "resume": {"epoch": "XYZ", "seq": 1}}',
    '{"type": "subscribe", "kinds": ["decision"], "resume": {"epoch": "ab", "seq": true}}',
    '[1, 2]',
])
def test_anything_else_is_refused_with_4400_and_a_reason(raw: str) -> None:
    with pytest.raises(StreamRefusal) as refused:
        parse_subscribe(raw)
    assert refused.value.code == CLOSE_BAD_MESSAGE and refused.value.reason


def test_decisions_queue_in_order_up_to_the_limit_then_the_client_is_too_far_behind() -> None:
    queue = ClientQueue(limit=3)
    for n in range(3):
        queue.offer_event(encode_message("decision", n, {"n": n}))
    assert not queue.overflowed
    queue.offer_event(encode_message("decision", 3, {"n": 3}))
    assert queue.overflowed
    assert [m["seq"] for m in orjson.loads(queue.take_frame())] == [0, 1, 2]
    assert not queue


def test_portfolio_deltas_merge_and_system_messages_replace_while_waiting() -> None:
    queue = ClientQueue()
    queue.offer_portfolio(1, {"positions": {"A": {"position": 1.0}}, "totals": {"pnl": 1.0}})
    queue.offer_portfolio(2, {"positions": {"B": {"position": 2.0}}, "totals": {"pnl": 2.0}})
    queue.offer_portfolio(3, {"positions": {"A": {"position": 3.0}}, "totals": None})
    queue.offer_system(encode_message("system", 1, {"halted": False}))
    queue.offer_system(encode_message("system", 2, {"halted": True}))
    frame = orjson.loads(queue.take_frame())
    assert frame == [
        {"kind": "portfolio", "seq": 3, "data": {"positions": {"A": {"position": 3.0}, "B": {"position": 2.0}},
                                                 "totals": {"pnl": 2.0}}},
        {"kind": "system", "seq": 2, "data": {"halted": True}},
    ]


def test_a_shared_delta_is_sent_as_encoded_and_merges_like_any_other_when_a_second_comes() -> None:
    first = {"positions": {"A": {"position": 1.0}}, "totals": {"pnl": 1.0}}
    shared = encode_message("portfolio", 1, first)
    keeping_up, behind = ClientQueue(), ClientQueue()
    for queue in (keeping_up, behind):
        queue.offer_portfolio(1, first, shared)
    assert keeping_up.take_frame() == b"[" + shared + b"]"  # the very bytes every client shares
    second = {"positions": {"B": {"position": 2.0}}, "totals": {"pnl": 2.0}}
    behind.offer_portfolio(2, second, encode_message("portfolio", 2, second))
    assert orjson.loads(behind.take_frame()) == [
        {"kind": "portfolio", "seq": 2, "data": {"positions": {"A": {"position": 1.0}, "B": {"position": 2.0}},
                                                 "totals": {"pnl": 2.0}}}]
    assert first == {"positions": {"A": {"position": 1.0}}, "totals": {"pnl": 1.0}}  # the shared delta untouched
    assert not behind and not keeping_up


def test_what_a_resume_replays_counts_on_top_of_the_limit_until_sent() -> None:
    queue = ClientQueue(limit=2)
    for n in range(5):
        queue.replay(encode_message("decision", n, {}))
    queue.offer_event(encode_message("decision", 5, {}))
    assert not queue.overflowed
    assert len(orjson.loads(queue.take_frame())) == 6
    for n in range(3):
        queue.offer_event(encode_message("decision", n, {}))
    assert queue.overflowed


def test_an_unreadable_decision_state_is_skipped_not_raised() -> None:
    assert decision_summary({"decision_id": "x", "symbol": "A"}, "store", 1) is None
    assert decision_summary({"decision_id": "x", "symbol": "A", "action": "BUY", "quantity": float("nan"),
                             "price": 1.0, "timestamp_ns": 1}, "store", 1) is None
