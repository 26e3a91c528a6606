"""Generative: no tick, however malformed, stops a shard or blocks a symbol (real Redis, a running shard).

Field maps drawn from wide strategies (any bytes, text with NUL and control
characters, invalid UTF-8, integers far beyond 2**63, tiny and huge floats,
NaN/inf, empty and enormous strings, missing and extra fields) are XADDed raw
(``TickPublisher.publish_raw``, bypassing the publisher's checks) between good
ticks into one shard that runs for the whole test. After each example every
entry must be decided exactly once or dead-lettered exactly once with a
reason, every good tick decided (unless an accepted drawn tick made it go
back in time, then dead-lettered for that), and a good tick published last on
a symbol no drawn input touches must be decided: the shard neither died nor stalled.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.desk import SymbolDesk
from aggregates.strategies import Strategy, hold
from edge.tick_stream import TickKeys, TickPublisher
from edge.ticks import BadTick, INT64_MAX, Tick, TickBounds, decode_tick, validate_tick
from tests.actors.hot_path_support import make_hot_path, wait_until_decided

TARGETS = ["AAA", "BBB"]
SENTINEL = "ZZZ"
CODES = {"malformed", "bad_timestamp", "bad_price", "bad_size", "bad_quote", "time_backwards",
         "symbol_mismatch", "processing_failed"}
FIELD_NAMES = [b"sym", b"ts", b"px", b"sz", b"bid", b"ask", b"sent"]


class Holds(Strategy):
    """Never trades: the test is about the ticks, not the decisions."""

    def decide(self, **_):
        return hold()


values = st.one_of(
    st.binary(max_size=24),
    st.text(max_size=24).map(str.encode),
    st.integers().map(lambda i: str(i).encode()),
    st.integers(min_value=2**63 - 5, max_value=2**90).map(lambda i: str(i).encode()),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats().map(lambda f: repr(f).encode()),
    st.floats(min_value=-1e-300, max_value=1e-300).map(lambda f: repr(f).encode()),
    st.floats(),
    st.sampled_from([b"", b"nan", b"inf", b"-inf", b"1e309", b"5e-324", b"\x00", b"1\x00", b" 7 ", b"1_0",
                     b"0x10", b"\xff\xfe", b"\x1b[2J", b"9" * 5_000, b"1" * 100_000, b"-0", b"1e18", b"4102444800000000000"]),
)
names = st.one_of(st.sampled_from(FIELD_NAMES), st.binary(max_size=8))


@st.composite
def garbage(draw: st.DrawFn, symbol: str) -> dict[bytes, object]:
    """A raw field map for ``symbol``'s stream: wholly drawn, or a good tick with fields changed or dropped."""
    if draw(st.booleans()):
        return draw(st.dictionaries(names, values, min_size=1, max_size=8))
    fields: dict[bytes, object] = {b"sym": symbol.encode(), b"ts": str(time.time_ns()).encode(),
                                   b"px": b"100.5", b"sz": b"2.0"}
    fields[draw(st.sampled_from(FIELD_NAMES))] = draw(values)
    fields.update(draw(st.dictionaries(names, values, max_size=2)))
    for name in draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=2)):
        fields.pop(name, None)
    return fields or {b"x": b""}


@st.composite
def interleavings(draw: st.DrawFn) -> list[tuple[str, dict[bytes, object] | None]]:
    """(symbol, fields) to XADD raw, or (symbol, None) for a good tick there, in publishing order."""
    steps = []
    for symbol in draw(st.lists(st.sampled_from(TARGETS), min_size=20, max_size=60)):
        steps.append((symbol, draw(st.none() | garbage(symbol))))
    return steps


class Ledger:
    """What the test published and what it has checked so far."""

    def __init__(self) -> None:
        self.published = 0
        self.notification = 0
        self.dead_cursor = "0"
        self.last_ts: dict[str, int] = {}
        self.good_ts = 0

    def next_good_ts(self) -> int:
        self.good_ts = max(self.good_ts + 1, time.time_ns())
        return self.good_ts


def test_drawn_garbage_never_stops_or_blocks_a_shard(redis_url, namespace):
    hot = make_hot_path(redis_url, namespace, Holds(), symbols=[*TARGETS, SENTINEL])
    publisher = TickPublisher(hot.client, hot.keys, hot.symbols)
    ledger = Ledger()

    @settings(max_examples=30)
    @given(steps=interleavings())
    def example(steps):
        entries: list[tuple[str, str, int | None]] = []  # (symbol, entry id, good tick's ts)
        for symbol, fields in steps:
            if fields is None:
                ts = ledger.next_good_ts()
                assert publisher.publish([Tick(symbol, ts, 100.0 + ts % 7, 1.0)]).accepted == 1
                entry_id = hot.client.xrevrange(hot.keys.stream(symbol), count=1)[0][0]
            else:
                ts = None
                entry_id = publisher.publish_raw(symbol, fields)
            entries.append((symbol, entry_id.decode(), ts))
        publisher.publish([Tick(SENTINEL, ledger.next_good_ts(), 50.0, 1.0)])
        sentinel_id = hot.client.xrevrange(hot.keys.stream(SENTINEL), count=1)[0][0].decode()
        ledger.published += len(entries) + 1
        wait_until_decided(hot, ledger.published, timeout=60)
        assert hot.shard.failure is None

        decided = _new_decisions(hot, ledger)
        dead = _new_dead_letters(hot, ledger)
        assert decided.pop((SENTINEL, sentinel_id), None) is not None, "the shard stalled"
        outcomes = set(decided) | set(dead)
        assert not set(decided) & set(dead), "an entry both decided and dead-lettered"
        assert outcomes == {(s, i) for s, i, _ in entries}, "an entry lost, or one never published"
        assert all(code in CODES and reason for code, reason in dead.values())
        for symbol, entry_id, good_ts in entries:
            key = (symbol, entry_id)
            if key in decided:
                assert decided[key] >= ledger.last_ts.get(symbol, 0)
                ledger.last_ts[symbol] = decided[key]
            elif good_ts is not None:  # a good tick refused only because a drawn one went later in time
                assert dead[key][0] == "time_backwards" and good_ts < ledger.last_ts[symbol]

    with hot:
        example()
    assert hot.shard.restarts == 0


@pytest.mark.parametrize("ts", [b"565537991470438310754648064", str(INT64_MAX).encode(), b"-230291709"])
def test_a_garbage_time_on_the_newest_entry_of_a_read_moves_no_window_and_stops_no_shard(
        redis_url, namespace, ts) -> None:
    # Found by the drawn test above: a time past int64 on the newest entry of a read went into the book's
    # published lag (stream less event time), which orjson could not encode, and the shard stopped reading.
    hot = make_hot_path(redis_url, namespace, Holds(), symbols=[*TARGETS, SENTINEL])
    publisher = TickPublisher(hot.client, hot.keys, hot.symbols)
    with hot:
        good = time.time_ns()
        publisher.publish([Tick("AAA", good, 100.0, 1.0)])
        publisher.publish_raw("BBB", {b"sym": b"BBB", b"ts": ts, b"px": b"100.5", b"sz": b"2.0"})
        wait_until_decided(hot, 2)
        lag_ms = hot.shard._lag_ms  # noqa: SLF001 - the figure the shard publishes to the others
        publisher.publish([Tick(SENTINEL, good + 1, 50.0, 1.0)])
        wait_until_decided(hot, 3)  # the shard still reads
        assert hot.shard.failure is None
    assert abs(lag_ms) < 60_000  # from the good tick's time: the garbage one was not taken for the newest


def _new_decisions(hot, ledger: Ledger) -> dict[tuple[str, str], int]:
    """(symbol, entry id) → tick time of the decisions committed since the last look."""
    found = {}
    for notification in hot.app.recorder.select_notifications(start=ledger.notification + 1, limit=100_000):
        ledger.notification = notification.id
        event = hot.app.mapper.to_domain_event(notification)
        if isinstance(event, SymbolDesk.DecisionTaken):
            key = (event.symbol, event.correlation_id)
            assert key not in found, f"{key} decided twice"
            found[key] = event.timestamp_ns
    return found


def _new_dead_letters(hot, ledger: Ledger) -> dict[tuple[str, str], tuple[str, str]]:
    """(symbol, entry id) → (code, reason) of the dead letters written since the last look."""
    found = {}
    for dead_id, fields in hot.client.xrange(hot.keys.dead_letters, min=f"({ledger.dead_cursor}"):
        ledger.dead_cursor = dead_id.decode()
        key = (fields[b"symbol"].decode(), fields[b"entry_id"].decode())
        assert key not in found, f"{key} dead-lettered twice"
        found[key] = (fields[b"code"].decode(), fields[b"reason"].decode())
    return found


symbols = st.one_of(st.sampled_from(["AAA", "BBB", "", "\x00", "ZZZ", "\ud800", 10**5000]), st.text(max_size=6),
                    st.integers(), st.none())
times = st.one_of(st.integers(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.booleans(),
                  st.sampled_from([0, INT64_MAX, INT64_MAX + 1, 4_102_444_800 * 10**9, 10**5000]),
                  st.integers(min_value=-10**12, max_value=10**12).map(lambda d: time.time_ns() + d * 1000))
numbers = st.one_of(st.floats(), st.integers(min_value=-(2**80), max_value=2**80), st.none(),
                    st.floats(min_value=1e-12, max_value=1e12),
                    st.sampled_from([1e-12, 1e12, 1e15, 1e16, 5e-324, 1e308, 10**5000, "1.0"]))
ticks = st.builds(Tick, symbols, times, numbers, numbers, numbers, numbers)


def test_the_publisher_appends_exactly_the_ticks_every_stage_can_hold(redis_url, key_prefix):
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = TickKeys(key_prefix)

    @settings(max_examples=40)
    @given(drawn=st.lists(ticks, max_size=40))
    def example(drawn):
        known = ["AAA", "BBB"]
        before = {s: client.xlen(keys.stream(s)) for s in known}
        dead_before = client.xlen(keys.dead_letters)
        report = TickPublisher(client, keys, known).publish(drawn)
        assert report.accepted + sum(report.rejected.values()) == len(drawn)
        appended = [(s, decode_tick(s, fields)) for s in known
                    for _, fields in client.xrange(keys.stream(s))[before[s]:]]
        assert len(appended) == report.accepted
        assert client.xlen(keys.dead_letters) - dead_before == sum(report.rejected.values())
        last: dict[str, int] = {}
        for symbol, tick in appended:
            validate_tick(tick, last.get(symbol), TickBounds())
            last[symbol] = tick.ts_ns
        expected = [t for t in drawn if _accepted(t, known)]
        assert sorted(map(repr, (t for _, t in appended))) == sorted(map(repr, _in_time(expected)))

    example()


def _accepted(tick: Tick, known: list[str]) -> bool:
    try:
        validate_tick(tick)
    except BadTick:
        return False
    return tick.symbol in known


def _in_time(ticks: list[Tick]) -> list[Tick]:
    """The ticks that do not go back in time within their symbol, as the publisher keeps them."""
    last: dict[str, int] = {}
    kept = []
    for tick in ticks:
        if tick.ts_ns >= last.get(tick.symbol, -1):
            last[tick.symbol] = tick.ts_ns
            kept.append(tick)
    return kept
