"""A supervised component: its exit and its restart are typed changes, the restart waits out its backoff."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from actors.system.components import Component, ComponentExited, ComponentRestarted, ComponentSpec, RestartPolicy


def test_an_exit_then_a_restart_after_the_backoff(tmp_path: Path) -> None:
    now = [0.0]
    spec = ComponentSpec("quitter", [sys.executable, "-c", "import sys; sys.exit(3)"], {}, healthy=lambda: True,
                         restart=RestartPolicy(first_delay=2.0))
    component = Component(spec, tmp_path, clock=lambda: now[0])
    component.start()
    deadline = time.monotonic() + 60
    while (change := component.check()) is None:
        assert time.monotonic() < deadline, "the process never exited"
        time.sleep(0.05)
    assert change == ComponentExited("quitter", 3, 2.0, tmp_path / "quitter.log")
    assert str(change).startswith("quitter exited with code 3; restarting in 2.0 s")
    assert component.state == "restarting"
    now[0] = 1.9
    assert component.check() is None  # still waiting out the backoff
    now[0] = 2.0
    assert component.check() == ComponentRestarted("quitter", 1)
    assert component.restarts == 1
    component.stop()


def test_a_held_exit_waits_for_resume_and_then_restarts_at_once(tmp_path: Path) -> None:
    now = [0.0]
    spec = ComponentSpec("waiter", [sys.executable, "-c", "import sys; sys.exit(3)"], {}, healthy=lambda: True,
                         restart=RestartPolicy(first_delay=2.0))
    component = Component(spec, tmp_path, clock=lambda: now[0])
    component.start()
    deadline = time.monotonic() + 60
    while (change := component.check(hold=True)) is None:
        assert time.monotonic() < deadline, "the process never exited"
        time.sleep(0.05)
    assert isinstance(change, ComponentExited)
    now[0] = 100.0
    assert component.check(hold=True) is None  # its service is still down: no restart, whatever the backoff
    assert component.resume() is True
    assert component.check() == ComponentRestarted("waiter", 1)  # at once, not after a backoff
    assert component.resume() is False  # nothing waits any more
    component.stop()
