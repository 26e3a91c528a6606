"""Ctrl-C and SIGTERM stop ``glassbox up`` at any moment of its start-up, leaving no child process behind.

The end-to-end cases run the real command as a subprocess with every service
embedded (it starts its own Redis, broker and PostgreSQL, as a user's first
run does) and signal it as soon as it says it reached a given step. Every
process below it is sampled from ``/proc`` while it runs, so "nothing left"
is checked by process id, not by what the supervisor believes it started.
The bounds are for a loaded machine: they catch a start-up that goes on
regardless (it used to, for minutes), they do not measure speed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.system.components import Component, ComponentSpec
from actors.system.stop_signals import StartupInterrupted, StopSignals
from aggregates.registry import ModelRegistry
from tests.conftest import reachable_tmp_dir
from tests.process_report import LoggedProcess, interrupted_after, wait_until

pytestmark = pytest.mark.timeout(900)

STEP_TIMEOUT = 300.0
"""Seconds ``glassbox up`` may take to reach a step of its start-up on a loaded machine."""
STOPPED_WITHIN = 30.0
"""Seconds from the signal to its exit: its children's stops (SIGTERM, and a shard may finish loading
first) plus a little; a start-up that ignored the signal would run on to its end and drain."""
_EMBEDDED = ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")


class Descendants:
    """Every process below ``root`` seen while it ran, sampled from ``/proc`` every 20 ms by a thread.

    Each is kept with its start time, so a pid that the kernel gives to another
    process later is not taken for it.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[tuple[int, str], str] = {}
        """(pid, start time) → command line."""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_done, name="descendants", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def still_running(self) -> list[str]:
        """Those seen that run now (a zombie has exited: it only waits for init to reap it)."""
        running = []
        for (pid, started), cmdline in self.seen.items():
            fields = _stat(pid)
            if fields and fields[0] != "Z" and fields[19] == started:
                running.append(f"pid {pid}: {cmdline}")
        return running

    def _sample_until_done(self) -> None:
        while not self._done.is_set():
            self._sample()
            self._done.wait(0.02)

    def _sample(self) -> None:
        children: dict[int, list[int]] = {}
        stats: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (fields := _stat(int(entry.name))):
                stats[int(entry.name)] = fields
                children.setdefault(int(fields[1]), []).append(int(entry.name))
        below, found = list(children.get(self.root, [])), []
        while below:
            pid = below.pop()
            found.append(pid)
            below += children.get(pid, [])
        for pid in found:  # the command line read again each time: a child seen before its exec shows ours
            key = (pid, stats[pid][19])
            try:
                self.seen[key] = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                                  .decode(errors="replace").strip())
            except OSError:
                self.seen.setdefault(key, "(exited)")


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command (state, ppid, ...); empty when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


@pytest.fixture
def start_up(model_registry: ModelRegistry, tmp_path: Path) -> Iterator:
    """Start ``glassbox up`` with every service embedded; yields ``start(trained)`` → (process, its descendants)."""
    started: list[tuple[LoggedProcess, Descendants]] = []
    with reachable_tmp_dir() as home:  # the embedded PostgreSQL's account must reach its data dir

        def start(trained: bool = True) -> tuple[LoggedProcess, Descendants]:
            if trained:  # else the first run trains the specialists, one of the steps to interrupt
                shutil.copytree(model_registry.root, home / "models")
            env = {k: v for k, v in os.environ.items() if k not in _EMBEDDED} | {"GLASSBOX_HOME": str(home)}
            process = LoggedProcess([sys.executable, "-m", "actors.system.cli", "up", "--source", "bundled",
                                     "--api-port", "0"], tmp_path / "up.out", home / "run" / "logs", env=env,
                                    start_new_session=True)  # its own process group, as a terminal gives it
            started.append((process, Descendants(process.pid)))
            return started[-1]

        yield start
        for process, descendants in started:
            process.stop(60)
            descendants.stop()
            for left in descendants.still_running():  # a failed test must not leave servers running
                os.kill(int(left.split()[1].rstrip(":")), signal.SIGKILL)


def _reached(process: LoggedProcess, step: str) -> None:
    wait_until(lambda: step in process.output(), STEP_TIMEOUT, f"glassbox up to print {step!r}", process, every=0.02)


@pytest.mark.parametrize(("step", "signum", "trained"), [
    ("starting redis ...", signal.SIGTERM, True),  # its first line: the first server is being spawned
    ("training the regime specialists", signal.SIGTERM, False),  # in-process work, no child to wait on
    ("starting shard-0 ...", signal.SIGINT, True),  # a component waits for its health check
], ids=["first-line", "training", "component-health"])
def test_a_signal_during_start_up_stops_it_and_every_child_it_started(
    start_up, step: str, signum: signal.Signals, trained: bool,
) -> None:
    process, descendants = start_up(trained)
    _reached(process, step)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)  # Ctrl-C: the terminal signals the whole foreground group
    else:
        process.send_signal(signum)
    assert process.exit_code(STOPPED_WITHIN) == 128 + signum, process.report()
    descendants.stop()
    assert descendants.still_running() == [], process.report()
    assert f"glassbox up: stopped by {signum.name} during start-up" in process.output(), process.report()
    assert "Traceback" not in process.output(), process.report()
    assert not (process.log_dir.parent / "status.json").exists()  # it never reported itself running


def test_an_embedded_broker_that_dies_during_start_up_fails_it_naming_the_broker(start_up) -> None:
    process, descendants = start_up()
    _reached(process, "applying migrations ...")
    brokers = [key for key, cmdline in descendants.seen.items() if " broker " in f"{cmdline} "]
    assert len(brokers) == 1, (descendants.seen, process.report())
    os.kill(brokers[0][0], signal.SIGKILL)
    # The broker named, not the first component that cannot reach it (after its own start-up timeout).
    assert process.exit_code(STEP_TIMEOUT) == 1, process.report()
    assert "glassbox up: start-up failed: broker: the embedded broker exited with code -9 during start-up" \
        in process.output(), process.report()
    descendants.stop()
    assert descendants.still_running() == [], process.report()


# -- the parts, in this process ------------------------------------------------------------------------------


def test_a_component_whose_health_wait_is_interrupted_is_stopped(tmp_path: Path) -> None:
    spec = ComponentSpec("never-healthy", [sys.executable, "-c", "import time; time.sleep(600)"], {},
                         healthy=lambda: False, stop_timeout=10.0)
    component = Component(spec, tmp_path)
    with interrupted_after(1.0):  # as the supervisor's handler raises StartupInterrupted
        component.start()
    assert component.state == "stopped" and not _stat(component.pid)  # stopped and reaped


def test_stop_signals_interrupt_start_up_and_afterwards_only_ask_for_the_drain() -> None:
    previous, hook = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}, sys.unraisablehook
    signals = StopSignals()
    try:
        signals.install()
        with pytest.raises(StartupInterrupted) as interrupted, signals.starting():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # what start-up waits on: the handler raises in it
        assert interrupted.value.exit_code == 143 and signals.stop.is_set()
        os.kill(os.getpid(), signal.SIGINT)  # during the clean-up that follows: noted, nothing raised
        time.sleep(0.1)
        assert signals.received == signal.SIGTERM  # the first one is the one that counts

        running = StopSignals()
        running.install()
        with running.starting():
            pass
        os.kill(os.getpid(), signal.SIGINT)  # once the system runs: the drain is asked for, nothing raised
        assert running.stop.wait(5) and running.received == signal.SIGINT

        early = StopSignals()
        early.install()
        os.kill(os.getpid(), signal.SIGTERM)  # before start-up began: it never begins
        time.sleep(0.1)
        with pytest.raises(StartupInterrupted), early.starting():
            pytest.fail("start-up began after a stop signal")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook


def test_a_signal_inside_popen_waits_until_the_child_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    spawn = subprocess.Popen._execute_child

    def signalled_while_spawning(popen: subprocess.Popen, *args: object) -> None:
        spawn(popen, *args)
        os.kill(os.getpid(), signal.SIGTERM)  # after the fork, before Popen returns
        time.sleep(0.2)  # its handler runs here, inside Popen: the child would be lost

    previous, hook = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}, sys.unraisablehook
    kept: list[subprocess.Popen] = []
    signals = StopSignals()
    try:
        signals.install()
        with pytest.raises(StartupInterrupted), signals.starting():
            monkeypatch.setattr(subprocess.Popen, "_execute_child", signalled_while_spawning)
            kept.append(subprocess.Popen(["sleep", "60"]))
            monkeypatch.undo()
            time.sleep(30)  # the signal comes again: raised here
    finally:
        monkeypatch.undo()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook
        for child in kept:
            child.kill()
            child.wait()
    assert len(kept) == 1  # the child was kept (and could be stopped), not lost in Popen
