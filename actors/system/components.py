"""One supervised child process: started, checked for health, restarted with backoff, stopped.

The supervisor owns a list of these. Each writes its output to its own log
file (the supervisor's terminal stays readable) and tells it is up by a
health check: a ready file the child writes, or an HTTP answer.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge.child_process import child_setup, log_tail
from glassbox import GlassboxError

__all__ = ["Component", "ComponentChange", "ComponentExited", "ComponentFailed", "ComponentRestarted", "ComponentSpec",
           "RestartPolicy"]


class ComponentFailed(GlassboxError):
    """A component did not become healthy, or could not be kept running; names it."""

    def __init__(self, component: str, message: str) -> None:
        super().__init__(message)
        self.component = component


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff between restarts of a crashed component."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    reset_after: float = 60.0
    """Seconds of healthy running after which the next crash starts the backoff again."""

    def delay(self, consecutive_crashes: int) -> float:
        """Seconds to wait before restart number ``consecutive_crashes`` (1-based)."""
        return min(self.first_delay * 2 ** max(consecutive_crashes - 1, 0), self.max_delay)


@dataclass(frozen=True)
class ComponentExited:
    """A component's process exited; it is restarted after ``restart_in`` seconds."""

    name: str
    exit_code: int
    restart_in: float
    log_path: Path

    def __str__(self) -> str:
        return f"{self.name} exited with code {self.exit_code}; restarting in {self.restart_in:.1f} s (log {self.log_path})"


@dataclass(frozen=True)
class ComponentRestarted:
    """A component's process was started again after it exited."""

    name: str
    restarts: int

    def __str__(self) -> str:
        return f"{self.name} restarted (restart {self.restarts})"


ComponentChange = ComponentExited | ComponentRestarted
"""What :meth:`Component.check` saw happen; ``str()`` of it is the line the supervisor prints."""


@dataclass(frozen=True)
class ComponentSpec:
    """How to run one component."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    healthy: Callable[[], bool]
    """True once the component serves; polled during start-up."""
    start_timeout: float = 60.0
    stop_timeout: float = 30.0
    """Seconds between SIGTERM and SIGKILL when stopping."""
    nice: int = 0
    """CPU niceness: the backbone runs below the hot path so its catch-up never starves deciding."""
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    ready_file: Path | None = None
    """Removed before each start, so a stale file from the previous run never counts."""


class Component:
    """A running child process of ``spec``, its restarts and its log."""

    def __init__(self, spec: ComponentSpec, log_dir: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.restarts = 0
        self._clock = clock
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._consecutive_crashes = 0
        self._restart_at: float | None = None
        self._stopped = False
        """Stopped on purpose (:meth:`stop`): its exit is not a crash, :meth:`check` leaves it down."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def state(self) -> str:
        """``running``, ``restarting`` (crashed, waiting out its backoff) or ``stopped``."""
        if self._process is not None and self._process.poll() is None:
            return "running"
        return "restarting" if self._restart_at is not None else "stopped"

    @property
    def stopped(self) -> bool:
        """Stopped on purpose (:meth:`stop`) and not started since: nothing brings it back by itself."""
        return self._stopped

    def start(self, between: Callable[[], None] = lambda: None) -> None:
        """Start the process and wait until it is healthy; when this raises, the process is stopped.

        ``between()`` runs between two health checks; what it raises ends the wait (the
        supervisor's raises when an embedded service died meanwhile). A stop signal raised
        during the wait (:class:`~actors.system.stop_signals.StartupInterrupted`) ends it too.

        Raises:
            ComponentFailed: it exited or stayed unhealthy for ``start_timeout`` seconds
                (the message names it and quotes the end of its log).
        """
        self._spawn()
        try:
            self._wait_until_healthy(between)
        except BaseException:
            self.stop()
            raise

    def _wait_until_healthy(self, between: Callable[[], None]) -> None:
        deadline = self._clock() + self.spec.start_timeout
        while not self._healthy():
            process = self._process
            assert process is not None
            if process.poll() is not None:
                raise ComponentFailed(
                    self.name, f"{self.name} exited with code {process.returncode} during start-up; "
                    f"end of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if self._clock() > deadline:
                raise ComponentFailed(
                    self.name, f"{self.name} was not healthy after {self.spec.start_timeout:g} s; "
                    f"end of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            between()
            time.sleep(0.1)

    def check(self, hold: bool = False) -> ComponentChange | None:
        """Restart the process if it crashed and its backoff has passed; what happened, if anything.

        ``hold``: a service it needs is down, so an exit is noted but the restart waits
        (for :meth:`resume`) instead of crash-looping against the missing service.
        """
        process = self._process
        now = self._clock()
        if self._stopped:
            return None
        if self._restart_at is not None:
            if hold or now < self._restart_at:
                return None
            self._restart_at = None
            self.restarts += 1
            self._spawn()
            return ComponentRestarted(self.name, self.restarts)
        if process is None or process.poll() is None:
            if process is not None and now - self._started_at > self.spec.restart.reset_after:
                self._consecutive_crashes = 0
            return None
        self._consecutive_crashes += 1
        delay = self.spec.restart.delay(self._consecutive_crashes)
        self._restart_at = now + delay
        return ComponentExited(self.name, process.returncode, delay, self.log_path)

    def resume(self) -> bool:
        """Restart at the next :meth:`check` a crashed one that waited, its backoff started again; whether it waited."""
        if self._restart_at is None:
            return False
        self._restart_at = self._clock()
        self._consecutive_crashes = 0
        return True

    def wait_for_restart(self) -> None:
        """After a :meth:`stop` that was meant to be brief: wait like a crashed one, not like a stopped one.

        The next :meth:`check` that is not held restarts it (or :meth:`resume`); a failed planned
        restart thus never leaves a component down for good.
        """
        if self._process is not None and self._process.poll() is None:
            return
        self._stopped = False
        self._restart_at = self._clock()

    def respawn(self) -> None:
        """Stop it (SIGTERM) and start it again at once, not counted as a crash nor a restart.

        For a planned restart (after the broker lost its data); does not wait for health.
        """
        self.stop()
        self._consecutive_crashes = 0
        self._spawn()

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` (default: the spec's); the exit code."""
        self._restart_at = None
        self._stopped = True
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.spec.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL now (tests of crash recovery); the next :meth:`check` restarts it."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _healthy(self) -> bool:
        try:
            return self.spec.healthy()
        except Exception:  # noqa: BLE001 - any failure of a health check means "not yet"
            return False

    def _spawn(self) -> None:
        if self.spec.ready_file is not None:
            self.spec.ready_file.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        nice = self.spec.nice

        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                list(self.spec.argv), env=dict(self.spec.env), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,  # Ctrl-C reaches the supervisor only
                preexec_fn=child_setup(nice),
            )
        self._started_at = self._clock()
        self._stopped = False
