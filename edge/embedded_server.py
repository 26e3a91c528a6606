"""The shape every embedded server launcher shares: one server as a child process of ours.

docs/design.md ("Embedded default and production") runs Redis
(``edge.redis_server``), the Kafka-protocol broker (``backbone.broker``) and
PostgreSQL (``projections.postgres_server``) as children on 127.0.0.1 on a
free port, each with its files and log in a project-local data dir, unless
a URL names a running one (:func:`given_or_embedded`).

:class:`EmbeddedServer` holds what they do alike: find the binary, prepare the
data dir, spawn the server in its own session (a terminal's Ctrl-C reaches only
our process, which stops it in order) and have it die with us
(``PR_SET_PDEATHSIG``), wait until it answers, try another port when the
chosen one was taken meanwhile, and stop it by escalating signals. Each
launcher says only how it differs: four abstract members and a few hooks.

A server that says it is still starting (Redis loading its AOF answers
``LOADING``) is waited for, not declared dead: :meth:`EmbeddedServer.starting_progress`
says how far it is, printed through the ``progress`` callback every
:data:`PROGRESS_EVERY` seconds, and :meth:`EmbeddedServer.startup_timeout` may
scale the wait with what there is to load. :meth:`EmbeddedServer.restart` starts
a server that died again on its data dir and port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar

from edge.child_process import child_setup, free_port, log_tail
from glassbox import GlassboxError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType
    from typing import Self

__all__ = [
    "PORT_ATTEMPTS",
    "PROGRESS_EVERY",
    "EmbeddedServer",
    "ServerNotFound",
    "ServerStartError",
    "given_or_embedded",
    "is_executable",
]

PORT_ATTEMPTS = 3
"""Starts to try: another process may take a free port before the server binds it."""

PROGRESS_EVERY = 3.0
"""Seconds between two progress lines of a server that is still starting (a user sees it is alive)."""
_PROGRESS_ASK_EVERY = 0.5  # the first line comes as soon as the server says it is starting


class ServerNotFound(GlassboxError):
    """No binary for an embedded server, and none could be installed.

    Each launcher raises its own subclass, whose message says what to install
    or which URL to set instead.
    """


class ServerStartError(GlassboxError):
    """An embedded server's binary was found but the server did not come up.

    ``retriable`` is true when it failed because another process took its port
    first: starting again picks another free port, so it may succeed.
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class EmbeddedServer(ABC):
    """One server run as a child process on 127.0.0.1, its files and log in ``data_dir``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    Constructing one starts nothing and touches no file, so an unstarted
    instance can be handed to :func:`given_or_embedded`. ``startup_timeout``
    bounds the wait for an answer (seconds), a positive ``niceness`` runs the
    server below the hot path (``edge.child_process.child_setup``), a
    ``port`` is used instead of a free one (tried once: clients expect it there),
    and ``progress`` receives a line every :data:`PROGRESS_EVERY` seconds while
    the server says it is still starting (:meth:`starting_progress`).

    A launcher implements :meth:`find_binary`, :meth:`command`,
    :meth:`answers` and :attr:`address`, sets the class attributes below,
    and may override the hooks :meth:`on_prepare`, :meth:`popen_options`,
    :meth:`on_ready`, :meth:`send_stop_signal`, :meth:`starting_progress`
    and :meth:`startup_timeout`.
    """

    server_name: ClassVar[str]
    """What the server is called in error messages ("redis-server")."""
    logfile_name: ClassVar[str]
    """The log file in ``data_dir``; the server's stdout and stderr go there too."""
    readiness_question: ClassVar[str]
    """What :meth:`answers` asks, for the timeout message ("PING")."""
    state_error: ClassVar[type[GlassboxError]]
    """The launcher room's root error: raised by start() twice, or by port before start()."""
    start_error: ClassVar[type[ServerStartError]]
    """Raised when the server does not answer in time or exits."""
    port_taken_message: ClassVar[str] = "address already in use"
    """What the log says (in any case) when the server could not bind its port."""
    stop_signals: ClassVar[tuple[signal.Signals, ...]] = (signal.SIGTERM, signal.SIGKILL)
    """Sent in turn until the server exits, each given :attr:`stop_timeout` seconds."""
    stop_timeout: ClassVar[float] = 10.0

    def __init__(
        self, data_dir: Path, *, startup_timeout: float, niceness: int = 0, port: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self._data_dir = Path(data_dir).resolve()  # servers chdir before opening their files
        self._startup_timeout = startup_timeout
        self._progress = progress or (lambda line: None)
        self._niceness = niceness
        self._fixed_port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        state = f"port={self._port}" if self._process is not None else "stopped"
        return f"{type(self).__name__}(data_dir={str(self._data_dir)!r}, {state})"

    # -- what a launcher says ------------------------------------------------

    @abstractmethod
    def find_binary(self) -> Path:
        """The executable to run (or the directory holding the executables).

        Runs before the data dir is created. Raises the launcher's
        :class:`ServerNotFound` subclass, saying what to install or set.
        """

    @abstractmethod
    def command(self, binary: Path, port: int) -> list[str]:
        """The command line that runs the server from ``binary`` on 127.0.0.1:``port``."""

    @abstractmethod
    def answers(self) -> bool:
        """Whether the server on :attr:`port` answers :attr:`readiness_question` now.

        Called every 50 ms while starting; a refused connection is ``False``,
        not an error.
        """

    @property
    @abstractmethod
    def address(self) -> str:
        """What a client connects to, as ``REDIS_URL`` and the like would hold it.

        Raises :attr:`state_error` before start().
        """

    # -- hooks ---------------------------------------------------------------

    def on_prepare(self, binary: Path) -> None:
        """Make the data dir ready before the first spawn; by default, create it."""
        self._data_dir.mkdir(parents=True, exist_ok=True)

    def popen_options(self) -> dict[str, object]:
        """Further ``subprocess.Popen`` keyword arguments (a working dir, a user)."""
        return {}

    def on_ready(self) -> None:
        """Run once the server answers; when it raises, the server is stopped first."""

    def send_stop_signal(self, process: subprocess.Popen[bytes], stop_signal: signal.Signals) -> None:
        """Ask ``process`` to stop with ``stop_signal`` (one of :attr:`stop_signals`)."""
        process.send_signal(stop_signal)

    def starting_progress(self) -> str | None:
        """How far the server says it is while it does not answer yet ("loading the AOF, 43% of 812 MB"), or None.

        Asked twice a second while :meth:`answers` is false; a line is passed to
        ``progress`` at most every :data:`PROGRESS_EVERY` seconds. By default
        None: the server says nothing.
        """
        return None

    def startup_timeout(self) -> float:
        """Seconds this start waits for an answer; by default the constructor's ``startup_timeout``.

        Asked at each start, after :meth:`on_prepare`, so a launcher may scale it
        with what the server must load first (Redis: the AOF's size).
        """
        return self._startup_timeout

    # -- the shared life cycle -----------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The directory the server keeps its files and its log in."""
        return self._data_dir

    @property
    def logfile(self) -> Path:
        """The server's log file (its stdout and stderr go there too)."""
        return self._data_dir / self.logfile_name

    @property
    def port(self) -> int:
        """The TCP port the server listens on; raises :attr:`state_error` before start()."""
        if self._port is None or self._process is None:
            msg = f"{type(self).__name__} is not running: call start() or use it in a with block"
            raise self.state_error(msg)
        return self._port

    @property
    def pid(self) -> int:
        """The server's process id (fault tests pause it with SIGSTOP); raises before start()."""
        if self._process is None:
            msg = f"{type(self).__name__} is not running"
            raise self.state_error(msg)
        return self._process.pid

    def start(self) -> None:
        """Start the server and wait until it answers.

        Raises the launcher's :class:`ServerNotFound` when there is no binary,
        its :class:`ServerStartError` when the server does not answer within
        the start-up timeout (the message ends with the tail of its log), and
        :attr:`state_error` when already started. Whatever it raises, a server
        it spawned is stopped first, also when the wait was interrupted (an
        exception raised by a signal handler, as Ctrl-C's ``KeyboardInterrupt``).
        """
        if self._process is not None:
            msg = f"{type(self).__name__} is already running"
            raise self.state_error(msg)
        binary = self.find_binary()
        self.on_prepare(binary)
        try:
            self._start_on_a_free_port(binary)
            self.on_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def exit_code(self) -> int | None:
        """The server's exit code when it died by itself (killed, crashed); None while it runs or before start()."""
        return None if self._process is None else self._process.poll()

    def restart(self) -> None:
        """Start the server again on the data dir and the port it had, and wait until it answers.

        For a supervisor whose server died during a run (or was stopped): its
        clients expect it on the same port, so that port is tried once. What is
        left of a dead process is reaped first; a running one is stopped first.
        Waits as :meth:`start` does (for Redis: until it has loaded its AOF,
        with progress lines). Raises what :meth:`start` raises, and
        :attr:`state_error` when it was never started.
        """
        port = self._port
        if port is None:
            msg = f"{type(self).__name__} was never started: call start() first"
            raise self.state_error(msg)
        self.stop()
        fixed, self._fixed_port = self._fixed_port, port
        try:
            self.start()
        finally:
            self._fixed_port = fixed

    def stop(self) -> None:
        """Stop the server, sending :attr:`stop_signals` in turn until it exits.

        Does nothing when it is not running. Raises nothing on purpose. The
        server counts as running until it has exited: a stop cut short (by a
        signal handler's exception) leaves it to the next :meth:`stop`.
        """
        process = self._process
        if process is None:
            return
        for stop_signal in self.stop_signals:
            if process.poll() is not None:
                break
            self.send_stop_signal(process, stop_signal)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                continue
        process.wait()
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self) -> str:
        """The last lines of the server's log, for error messages."""
        return log_tail(self.logfile)

    def _start_on_a_free_port(self, binary: Path) -> None:
        # A fixed port is tried once: clients expect the server there.
        attempts = 1 if self._fixed_port else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                self._start_on(binary, self._fixed_port or free_port())
            except ServerStartError as error:
                self.stop()
                if not error.retriable or attempt == attempts:
                    raise
            else:
                return

    def _start_on(self, binary: Path, port: int) -> None:
        log_offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        self._port = port
        self._process = self._spawn(binary, port)
        reason = self._wait_until_answers(self._process, self.startup_timeout())
        if reason is None:
            return
        msg = f"{self.server_name} on port {port} {reason}; log {self.logfile} ends:\n{self.log_tail()}"
        raise self.start_error(msg, retriable=self._port_was_taken(log_offset))

    def _wait_until_answers(self, process: subprocess.Popen[bytes], timeout: float) -> str | None:
        """Poll :meth:`answers` until it is true; None then, else why not (the process exited, or ``timeout`` passed).

        While it does not answer, :meth:`starting_progress` is asked at every
        poll until it first answers, then twice a second, and passed on at most every :data:`PROGRESS_EVERY` seconds: a server still loading
        is starting, not dead; only the timeout or its exit ends the wait.
        """
        now = time.monotonic()
        deadline, next_ask, next_line, last = now + timeout, now, now, None
        while True:
            if process.poll() is not None:
                return f"exited with code {process.returncode}" + (f" while {last}" if last else "")
            if self.answers():
                return None
            now = time.monotonic()
            if now > deadline:
                still = f" (still {last})" if last else ""
                return f"did not answer {self.readiness_question} within {timeout:.1f} s{still}"
            if now >= next_ask:
                last = self.starting_progress() or last
                # Every poll until the server first says how far it is (a short load would be
                # over between two asks), then twice a second.
                next_ask = now + (_PROGRESS_ASK_EVERY if last else 0.0)
                if last and now >= next_line:
                    next_line = now + PROGRESS_EVERY
                    self._progress(f"{last} ...")
            time.sleep(0.05)

    def _spawn(self, binary: Path, port: int) -> subprocess.Popen[bytes]:
        # Errors printed before the server opens its log file (bad flags) go there too.
        with self.logfile.open("ab") as output:
            return subprocess.Popen(  # noqa: S603 - our own command line, no shell
                self.command(binary, port),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                preexec_fn=child_setup(self._niceness),  # after any switch of user (popen_options)
                start_new_session=True,  # a terminal's Ctrl-C is for our process: it stops us in order
                **self.popen_options(),  # type: ignore[arg-type]
            )

    def _port_was_taken(self, log_offset: int) -> bool:
        # Only this attempt's lines: the log keeps every earlier start's too.
        try:
            with self.logfile.open("rb") as log:
                log.seek(log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return False
        return self.port_taken_message.lower() in text.lower()


@contextmanager
def given_or_embedded(given: str | None, server: EmbeddedServer) -> Iterator[str]:
    """Yield ``given`` when set (starting nothing), else ``server``'s address while it runs.

    ``given`` is what the user configured (``REDIS_URL``, ``KAFKA_BOOTSTRAP_SERVERS``,
    ``DATABASE_URL``); an empty string counts as not given. ``server`` is an
    unstarted launcher, started for the block and stopped after it. Raises what
    ``server.start()`` raises.
    """
    if given:
        yield given
        return
    with server:
        yield server.address


def is_executable(path: Path) -> bool:
    """Whether ``path`` is a file this process may execute."""
    return path.is_file() and os.access(path, os.X_OK)

