"""Tick bounds: every field a tick may carry is one every later stage can hold (pure code, no Redis)."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ticks import INT64_MAX, BadTick, Tick, TickBounds, validate_tick
from glassbox import Settings

NOW_NS = time.time_ns()
BOUNDS = TickBounds()
YEAR_2100_NS = int(datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp()) * 10**9


def code_of(tick: Tick, bounds: TickBounds = BOUNDS, latest_ns: int | None = None) -> str | None:
    try:
        validate_tick(tick, bounds=bounds, latest_ns=latest_ns)
    except BadTick as error:
        return error.code
    return None


@pytest.mark.parametrize(
    "tick, code",
    [
        (Tick("X", 2**64, 1.0, 1.0), "bad_timestamp"),          # does not fit an int64: commits would fail
        (Tick("X", INT64_MAX + 1, 1.0, 1.0), "bad_timestamp"),
        (Tick("X", YEAR_2100_NS, 1.0, 1.0), "bad_timestamp"),    # would make every real tick time_backwards
        (Tick("X", NOW_NS + 3_600 * 10**9, 1.0, 1.0), "bad_timestamp"),
        (Tick("X", -1, 1.0, 1.0), "bad_timestamp"),
        (Tick("X", 1.5, 1.0, 1.0), "bad_timestamp"),             # type: ignore[arg-type]
        (Tick("X", True, 1.0, 1.0), "bad_timestamp"),            # type: ignore[arg-type]
        (Tick("X", 1, 1e13, 1.0), "bad_price"),
        (Tick("X", 1, 1e308, 1.0), "bad_price"),                 # made a decision's quantity NaN
        (Tick("X", 1, 5e-324, 1.0), "bad_price"),                # equity / price overflows
        (Tick("X", 1, 100, 1.0), "bad_price"),                   # type: ignore[arg-type]
        (Tick("X", 1, 1.0, 1e16), "bad_size"),
        (Tick("X", 1, 1.0, -0.0 - 1e-300), "bad_size"),
        (Tick("X", 1, 1.0, 1.0, bid=1e13), "bad_quote"),
        (Tick("X", 1, 1.0, 1.0, ask=math.inf), "bad_quote"),
        (Tick("X", 1, 1.0, 1.0, ask=1e-300), "bad_quote"),
        (Tick("X", 1, 1.0, 1.0, bid="1.0"), "bad_quote"),       # type: ignore[arg-type]
    ],
)
def test_values_outside_the_bounds_are_named(tick: Tick, code: str) -> None:
    assert code_of(tick) == code


def test_values_on_the_bounds_and_old_history_pass() -> None:
    assert code_of(Tick("X", 0, 1e-12, 0.0, 1e-12, 1e12)) is None
    assert code_of(Tick("X", NOW_NS, 1e12, 1e15)) is None
    bundled_goog_2004 = int(datetime(2004, 8, 19, tzinfo=timezone.utc).timestamp()) * 10**9
    assert code_of(Tick("X", bundled_goog_2004, 100.0, 1.0)) is None


def test_the_future_bound_follows_the_wall_clock() -> None:
    ahead = Tick("X", NOW_NS + 30 * 10**9, 1.0, 1.0)
    assert code_of(ahead) is None  # 30 s ahead: clocks drift
    assert code_of(ahead, TickBounds(max_future_s=10.0), latest_ns=NOW_NS + 10 * 10**9) == "bad_timestamp"
    assert code_of(ahead, latest_ns=NOW_NS) == "bad_timestamp"


def test_history_drops_only_the_wall_clock_bound() -> None:
    history = BOUNDS.for_history()
    assert code_of(Tick("X", YEAR_2100_NS, 1.0, 1.0), history) is None
    assert code_of(Tick("X", INT64_MAX + 1, 1.0, 1.0), history) == "bad_timestamp"
    assert code_of(Tick("X", 1, 1e13, 1.0), history) == "bad_price"


def test_the_floor_is_a_setting() -> None:
    bounds = TickBounds(earliest_ns=10**18)
    assert code_of(Tick("X", 10**18 - 1, 1.0, 1.0), bounds) == "bad_timestamp"
    assert code_of(Tick("X", 10**18, 1.0, 1.0), bounds) is None


def test_bounds_come_from_the_settings() -> None:
    settings = Settings.from_env({
        "GLASSBOX_TICK_EARLIEST": "1990-01-01", "GLASSBOX_TICK_MAX_FUTURE_S": "5",
        "GLASSBOX_TICK_MIN_PRICE": "0.01", "GLASSBOX_TICK_MAX_PRICE": "1e6", "GLASSBOX_TICK_MAX_SIZE": "1e9",
    })
    assert TickBounds.from_settings(settings) == TickBounds(631_152_000 * 10**9, 5.0, 0.01, 1e6, 1e9)
    assert TickBounds.from_settings(Settings.from_env({})) == TickBounds()


wide_numbers = st.one_of(
    st.floats(), st.integers(), st.floats(allow_nan=False, allow_infinity=False, min_value=-1e-300, max_value=1e-300),
    st.sampled_from([0.0, -0.0, 1e-12, 1e12, 1e15, 1e308, 5e-324, 2.0**63, math.nan, math.inf, -math.inf]),
    st.none(), st.text(max_size=5), st.booleans(),
)
wide_times = st.one_of(
    st.integers(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.booleans(),
    st.sampled_from([0, -1, INT64_MAX, INT64_MAX + 1, 2**64, NOW_NS, YEAR_2100_NS, 10**4000]),
)


@given(ts=wide_times, price=wide_numbers, size=wide_numbers, bid=wide_numbers, ask=wide_numbers)
def test_an_accepted_tick_is_one_every_later_stage_holds(ts, price, size, bid, ask) -> None:
    tick = Tick("X", ts, price, size, bid, ask)
    try:
        validate_tick(tick)
    except BadTick as error:
        assert error.code in {"bad_timestamp", "bad_price", "bad_size", "bad_quote"}
        assert len(str(error)) < 500
        return
    orjson.dumps({"ts": tick.ts_ns, "price": tick.price, "size": tick.size, "bid": tick.bid, "ask": tick.ask})
    datetime.fromtimestamp(tick.ts_ns / 1e9, tz=timezone.utc)
    assert tick.ts_ns <= time.time_ns() + 60 * 10**9
    for value in (tick.price * tick.size, 1e9 / tick.price, 1e9 / tick.price * tick.price, tick.price / 1e-12):
        assert math.isfinite(value)
