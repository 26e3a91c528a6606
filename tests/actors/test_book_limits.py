"""The risk limits bind on the whole book, whatever the number of shards (the real Redis, shards running at once).

Each run trades 12 synthetic symbols on 1, 2 or 4 shards deciding side by side,
fed live at about 1,200 ticks/s, long enough for P&L to move and every limit
to bind: the regime-blend policy sizes positions at 30 % of equity (over the
25 % concentration limit), twelve of them want 3.6 × leverage (over 1.5), and
the daily loss limit is set at 0.3 % so the walk's swings reach it (and halt
trading, as they do live). Then the
book is replayed from every shard's events in time order
(:mod:`tests.actors.book_replay`) and checked at every fill that grew a
position.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from actors.desk_actor import ActorSettings
from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from actors.sharding import assign_symbols
from aggregates.policy import DecisionPolicy, Sizing
from aggregates.risk import RiskLimits
from edge.feeds import SyntheticFeed
from edge.tick_stream import TickPublisher
from tests.actors.book_replay import committed_events, replay_book

SYMBOLS = SyntheticFeed.symbol_names(12)
ROUNDS = 700
CAPITAL = 1_000_000.0
LIMITS = RiskLimits(daily_loss_limit=0.003)
TICKS_PER_S = 1_200
STALL_S = 0.3


def staggered_ticks() -> list:
    """The feed's rounds with each symbol's tick a microsecond after the one before: one time order."""
    ticks = list(SyntheticFeed(SYMBOLS, seed=44).ticks(ROUNDS))
    return [dataclasses.replace(t, ts_ns=t.ts_ns + 1_000 * (i % len(SYMBOLS))) for i, t in enumerate(ticks)]


def run_shards(redis_url: str, namespace: str, policy: DecisionPolicy, shards: int,
               rounds_before_start: int = 0, stall_every: int = 0) -> tuple[list[str], np.ndarray]:
    """Trade the ticks on ``shards`` shards at once, fed at TICKS_PER_S; the shards' store names and view ages (ms).

    The first ``rounds_before_start`` rounds are fed before the shards start: they start on a backlog.
    Every ``stall_every`` rounds the feed stalls for STALL_S, then catches up as fast as it can.
    """
    owned = [s for s in assign_symbols(SYMBOLS, shards) if s]
    assert len(owned) == shards
    hot_paths = [
        HotPath(HotPathSettings(redis_url, namespace=namespace, capital=CAPITAL,
                                book_share=len(mine) / len(SYMBOLS),
                                shard=ShardSettings(name=f"shard-{i}", actor=ActorSettings(limits=LIMITS))),
                mine, policy)
        for i, mine in enumerate(owned)
    ]
    ticks = staggered_ticks()
    publisher = TickPublisher(hot_paths[0].client, hot_paths[0].keys, SYMBOLS)
    started = time.monotonic()

    def feed(rounds: range) -> None:
        for r in rounds:
            if stall_every and r % stall_every == 0:
                time.sleep(STALL_S)
            publisher.publish(ticks[r * len(SYMBOLS):(r + 1) * len(SYMBOLS)], stamp=False)
            pause = started + (r + 1) * len(SYMBOLS) / TICKS_PER_S - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    feed(range(rounds_before_start))
    for hot in hot_paths:
        hot.start()
    try:
        feed(range(rounds_before_start, ROUNDS))
        deadline = time.monotonic() + 60
        while sum(h.stats.snapshot().ticks for h in hot_paths) < len(ticks):
            assert time.monotonic() < deadline, "the shards did not decide every tick in time"
            time.sleep(0.05)
    finally:
        stoppers = [threading.Thread(target=h.stop) for h in hot_paths]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
    ages = np.concatenate([h.stats.view_ages_ms() for h in hot_paths])
    return [h.settings.store_name for h in hot_paths], ages


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_the_whole_book_stays_within_every_limit_at_every_fill(redis_url, namespace, policy, shards) -> None:
    sized = DecisionPolicy(policy.specialists, sizing=Sizing(target_fraction=0.3))
    stores, view_ages_ms = run_shards(redis_url, f"{namespace}s{shards}:", sized, shards)
    events = committed_events(redis_url, stores)
    assert sum(topic == "Trading.Decision.Taken" for topic, _ in events) == ROUNDS * len(SYMBOLS)
    book = replay_book(events, CAPITAL, LIMITS)
    assert book.breaches == []
    assert book.growing_fills >= 5  # positions were taken (the daily loss limit may halt early)
    # Every limit bound: each rule refused orders, and the book came close to each limit.
    broken = {reason.partition(":")[0] for r in book.refusals for reason in r["reasons"]}
    assert {"position_concentration", "leverage", "daily_loss"} <= broken, broken
    # The day's loss reached the limit: a shard halted trading (daily_loss_limit), and the halt refused too.
    assert "trading_halted" in broken
    assert book.max_concentration > 0.9 * LIMITS.max_position_fraction
    assert book.max_leverage > 0.6 * LIMITS.max_leverage  # each of 4 shards may only fill its own share
    for refusal in book.refusals:  # each refusal says why and what would have passed
        assert refusal["reasons"] and 0 <= refusal["max_quantity"] < refusal["requested_quantity"]
    # How stale the other shards' figures were at each commit that used them (none with one shard).
    assert (len(view_ages_ms) > 0) == (shards > 1)
    ages = (f"view age at commit p50 {np.percentile(view_ages_ms, 50):.0f} ms, p99 "
            f"{np.percentile(view_ages_ms, 99):.0f} ms, max {view_ages_ms.max()} ms") if len(view_ages_ms) else ""
    print(f"{shards} shard(s): {book.growing_fills} growing fills, {len(book.refusals)} refusals, "
          f"max concentration {book.max_concentration:.4f}, leverage {book.max_leverage:.4f}, "
          f"day loss {book.max_day_loss:.4f}; {ages}")


def test_shards_starting_on_a_backlog_only_reduce_until_they_have_caught_up(redis_url, namespace, policy) -> None:
    # 2 s of ticks (200 rounds) wait in the streams when two shards start: their first cycles decide
    # batches spanning far more than max_view_skew_ms of stream time, while the other shard's figures
    # hold only up to where it has got. Those orders may only reduce; the book holds at every fill.
    # (One shard alone needs no such rule: it decides its symbols' ticks in stream order, each check
    # seeing every other desk as of the tick before.)
    sized = DecisionPolicy(policy.specialists, sizing=Sizing(target_fraction=0.3))
    stores, _ = run_shards(redis_url, f"{namespace}b:", sized, 2, rounds_before_start=200)
    events = committed_events(redis_url, stores)
    book = replay_book(events, CAPITAL, LIMITS)
    assert book.breaches == []
    skewed = [r for r in book.refusals if any(reason.startswith("book_view_skew") for reason in r["reasons"])]
    assert skewed, "no order was held back while the shards caught up"
    assert all(r["max_quantity"] < r["requested_quantity"] for r in skewed)


def test_a_feed_that_stalls_and_catches_up_keeps_the_book_within_every_limit(redis_url, namespace, policy) -> None:
    # Every 100 rounds the feed stalls for 0.3 s, then publishes the 30 rounds it owes as fast as it can:
    # 0.3 s of price moves within a few ms of stream time, read by each shard in whatever pieces its
    # reads cut them. The view windows are in event time, so a check whose tick is 0.3 s past another
    # shard's figures may only reduce, though the figures are only a few ms old in stream time.
    sized = DecisionPolicy(policy.specialists, sizing=Sizing(target_fraction=0.3))
    stores, _ = run_shards(redis_url, f"{namespace}st:", sized, 4, stall_every=100)
    events = committed_events(redis_url, stores)
    assert sum(topic == "Trading.Decision.Taken" for topic, _ in events) == ROUNDS * len(SYMBOLS)
    book = replay_book(events, CAPITAL, LIMITS)
    assert book.breaches == []
    assert book.growing_fills >= 5
    skewed = [r for r in book.refusals if any(reason.startswith("book_view_skew") for reason in r["reasons"])]
    assert skewed, "no order was held back while the feed caught up"
