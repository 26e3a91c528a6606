"""Rebuilding desks from their events alone gives the state the store holds (real Redis)."""

from __future__ import annotations

from eventsourcing.domain import Snapshot

from actors.application import DeskApplication, event_store_env
from actors.replay import DeskReplay
from edge.feeds import SyntheticFeed
from tests.actors.hot_path_support import make_hot_path, publish, wait_until_decided

SYMBOLS = ["AAA", "BBB", "CCC"]


def test_rebuilt_desks_equal_the_recorded_ones_and_a_tampered_event_is_found(redis_url, namespace, policy) -> None:
    hot = make_hot_path(redis_url, namespace, policy, SYMBOLS, checkpoint_every=50)  # snapshots along the way
    with hot:
        ticks = publish(hot, SyntheticFeed(SYMBOLS, seed=31).ticks(300))
        wait_until_decided(hot, len(ticks))
    app = DeskApplication(env=event_store_env(redis_url, hot.settings.store_name))
    seen: list[int] = []
    report = DeskReplay(app).verify(progress=seen.append)
    assert report.desks == len(SYMBOLS) and report.mismatches == []
    assert report.events == seen[-1] > len(ticks)  # decisions plus fills, regime changes, checkpoints
    live = {s: hot.app.load_desk(s) for s in SYMBOLS}
    assert all(d is not None and d.decisions == 300 for d in live.values())

    # A snapshot that disagrees with the events is caught.
    desk = app.load_desk("BBB")
    desk.position += 1.0
    hot.client.delete(f"{{{hot.settings.store_name}}}:snapshots:{desk.id}")  # make room at its version
    app.snapshots.put([Snapshot.take(desk)])
    report = DeskReplay(app).verify()
    assert len(report.mismatches) == 1 and report.mismatches[0].startswith("BBB") and "position" in report.mismatches[0]
    app.close()
