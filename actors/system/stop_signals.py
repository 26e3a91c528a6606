"""SIGINT and SIGTERM of ``glassbox up``: during start-up they interrupt it, once it runs they ask for a drain.

Start-up blocks in many places: an embedded server's wait for its first
answer, the migrations child, the first training, a component's wait for its
health check. Rather than have each of them poll a stop flag, the handler
raises :class:`StartupInterrupted` in the main thread while start-up runs
(:meth:`StopSignals.starting`), at whatever it waits on, as Python's own
Ctrl-C raises ``KeyboardInterrupt``; every start-up step stops what it spawned
when it raises, and the supervisor stops what had started, newest first.

An exception raised by a signal handler can do harm in two places, so the
handler does not raise there and lets a thread send the signal again every
:data:`RESEND_AFTER_S` seconds until start-up has seen it: inside
``subprocess.Popen`` (after the fork the child would be lost, still running,
and in the at-fork hooks Popen runs for a ``preexec_fn`` the exception is only
printed and start-up goes on), and while the interruption is already on its
way out (an ``except`` or ``finally`` handling it: the clean-up there must run
to its end, or a second Ctrl-C would leave children running). The resending
also catches an exception the interpreter swallowed (raised in a weakref
callback or a ``__del__``, where it can only be reported: that report is
silenced, the interruption comes again). The handler itself starts no
thread: the main thread may hold ``threading``'s own lock.

Once the system runs, a signal only sets :attr:`StopSignals.stop`: the
supervisor's watch loop sees it within a second and drains in order.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["RESEND_AFTER_S", "STOP_SIGNALS", "StartupInterrupted", "StopSignals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""What stops ``glassbox up``: Ctrl-C (a terminal sends SIGINT) and SIGTERM (``kill``, a service manager)."""
RESEND_AFTER_S = 0.5
"""Seconds between the sends of a signal that interrupted start-up, until start-up has seen it."""


class StartupInterrupted(BaseException):
    """A stop signal arrived during start-up; raised in the main thread at whatever start-up was doing.

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that no ``except Exception``
    on the way (a health check's "not yet", a best-effort history write) swallows it.
    """

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(f"{signum.name} during start-up")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process a signal ended: 128 + its number (130 Ctrl-C, 143 SIGTERM)."""
        return 128 + int(self.signum)


class StopSignals:
    """The stop signals of this process; :meth:`install` from the main thread, before start-up begins."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        """Set by the first signal (and every later one): the running system drains and stops."""
        self.received: signal.Signals | None = None
        """The first stop signal received, if any."""
        self._interrupting = False

    def install(self) -> None:
        """Handle :data:`STOP_SIGNALS` from now on (a signal before :meth:`starting` is kept for it)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        reported = sys.unraisablehook

        def unraisable(what: sys.UnraisableHookArgs) -> None:
            if not isinstance(what.exc_value, StartupInterrupted):  # that one is sent again: no report
                reported(what)

        sys.unraisablehook = unraisable

    @contextmanager
    def starting(self) -> Iterator[None]:
        """The block is start-up: a signal raises :class:`StartupInterrupted` in it.

        Raises:
            StartupInterrupted: a signal came before the block or during it.
        """
        if self.received is not None:
            raise StartupInterrupted(self.received)  # it came while nothing ran yet
        over = threading.Event()
        resender = threading.Thread(target=self._resend_until, args=(over,), name="stop-signal-resend", daemon=True)
        resender.start()  # before the handler may raise: a raise in Thread.start would leave its lock held
        try:
            self._interrupting = True
            yield
        finally:
            self._interrupting = False  # seen (or start-up done): what follows is not start-up
            over.set()
            resender.join()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes of whatever it was doing: no I/O (a print
        # would be a reentrant call if the main thread was printing too), no thread started.
        received = signal.Signals(signum)
        self.received = self.received or received
        self.stop.set()
        if self._interrupting and not _stopping_already() and not _spawning(frame):
            raise StartupInterrupted(received)
        # Else the system runs (the watch loop drains it), start-up is being stopped already,
        # or the signal is sent again (by _resend_until) once the spawn is done.

    def _resend_until(self, over: threading.Event) -> None:
        """In its own thread during start-up: once a signal came, send it again until start-up has seen it."""
        while not over.wait(RESEND_AFTER_S):
            if self.received is not None:
                signal.pthread_kill(threading.main_thread().ident or 0, self.received)


def _stopping_already() -> bool:
    """Whether a StartupInterrupted is being handled (an ``except`` or ``finally`` on its way out)."""
    return isinstance(sys.exc_info()[1], StartupInterrupted)


def _spawning(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside ``subprocess.Popen.__init__`` (the fork, the exec, the at-fork hooks)."""
    spawn = subprocess.Popen.__init__.__code__
    while frame is not None:
        if frame.f_code is spawn:
            return True
        frame = frame.f_back
    return False
