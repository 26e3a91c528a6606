"""Which components the supervisor brings back: only those an outage stopped, never one stopped on purpose.

Real child processes (``sleep`` and a quitter in Python), as the supervisor runs its components.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from actors.system.components import Component, ComponentSpec, RestartPolicy
from actors.system.supervisor import restart_movers, resume_waiting

_SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
_QUITTER = [sys.executable, "-c", "import sys; sys.exit(3)"]


def _component(tmp_path: Path, name: str, argv: list[str], now: list[float] | None = None) -> Component:
    spec = ComponentSpec(name, argv, {}, healthy=lambda: True, stop_timeout=5.0,
                         restart=RestartPolicy(first_delay=8.0))
    if now is None:
        return Component(spec, tmp_path)
    return Component(spec, tmp_path, clock=lambda: now[0])


def _crashed(component: Component, hold: bool) -> None:
    deadline = time.monotonic() + 60
    while component.check(hold=hold) is None:
        assert time.monotonic() < deadline, f"{component.name} never exited"
        time.sleep(0.05)
    assert component.state == "restarting"


def test_a_broker_restart_during_the_drain_respawns_only_the_movers_still_running(tmp_path: Path) -> None:
    relay0, relay1, worker, shard = (_component(tmp_path, n, _SLEEPER)
                                     for n in ("relay-shard-0", "relay-shard-1", "worker-archive", "shard-0"))
    components = [shard, relay0, relay1, worker]
    try:
        for c in components:
            c.start()
        relay0.stop()  # the drain stopped it once caught up
        pids_before = {c.name: c.pid for c in components}
        seen_during: list[dict[str, str]] = []
        restart_movers(components, lambda: seen_during.append({c.name: c.state for c in components}))
        assert seen_during == [{"shard-0": "running", "relay-shard-0": "stopped", "relay-shard-1": "stopped",
                                "worker-archive": "stopped"}]  # none runs during the re-publish
        assert relay0.state == "stopped" and relay0.stopped  # stays down: the drain stopped it
        assert relay1.state == "running" and relay1.pid != pids_before["relay-shard-1"]
        assert worker.state == "running" and worker.pid != pids_before["worker-archive"]
        assert shard.pid == pids_before["shard-0"]  # not a mover
    finally:
        for c in components:
            c.stop()


def test_a_failed_re_publish_leaves_the_movers_waiting_and_the_next_attempt_takes_them(tmp_path: Path) -> None:
    relay, stopped_worker = _component(tmp_path, "relay-shard-0", _SLEEPER), _component(tmp_path, "worker-archive", _SLEEPER)
    try:
        relay.start()
        stopped_worker.start()
        stopped_worker.stop()

        def fails() -> None:
            raise RuntimeError("offsets: did not finish")

        with pytest.raises(RuntimeError):
            restart_movers([relay, stopped_worker], fails)
        assert relay.state == "restarting" and not relay.stopped  # waits like a crashed one, not down for good
        assert relay.check(hold=True) is None  # held while the broker counts as down
        assert stopped_worker.stopped
        restart_movers([relay, stopped_worker], lambda: None)
        assert relay.state == "running" and stopped_worker.state == "stopped"
    finally:
        relay.stop()
        stopped_worker.stop()


def test_a_service_back_resumes_only_the_components_that_need_it(tmp_path: Path) -> None:
    now = [0.0]
    worker = _component(tmp_path, "worker-archive", _QUITTER, now)  # needs PostgreSQL: held while it was down
    shard = _component(tmp_path, "shard-0", _QUITTER, now)  # does not: crashed on its own, in its backoff
    try:
        worker.start()
        shard.start()
        _crashed(worker, hold=True)
        _crashed(shard, hold=False)
        assert resume_waiting([worker, shard], "postgresql") == ["worker-archive"]
        assert worker.check() is not None  # restarted at once
        assert shard.check() is None  # still waits out its own backoff (8 s on its clock)
        assert resume_waiting([worker, shard], "broker") == []  # a shard does not need the broker either
        now[0] = 8.0
        assert shard.check() is not None
    finally:
        worker.stop()
        shard.stop()
