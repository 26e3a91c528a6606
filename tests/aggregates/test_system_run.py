"""A supervisor run's history as events, stored and read back through the real Redis event store."""

from __future__ import annotations

from eventsourcing.application import Application

from actors.application import event_store_env
from aggregates.system_run import SystemRun


def test_a_failed_start_is_recorded_and_read_back(redis_url: str, namespace: str) -> None:
    app = Application(env=event_store_env(redis_url, f"{namespace}glassbox:system"))
    run = SystemRun.start(2, ["GOOG", "SYN001"], {"rate": 1000.0})
    run.component_restarted("relay-shard-0", -9, 1)
    run.startup_failed("postgres", "initdb failed: disk full")
    app.save(run)
    again = app.repository.get(run.id)
    assert (again.state, again.restarts, again.shards) == ("failed", {"relay-shard-0": 1}, 2)
    topics = [n.topic for n in app.recorder.select_notifications(1, 10)]
    assert topics == ["System.Run.Started", "System.Component.Restarted", "System.Startup.Failed"]
    app.close()
