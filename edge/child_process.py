"""What every child process of ours needs: to die with us, a free loopback port, its log's tail.

The embedded servers (``edge.embedded_server``) and the supervisor's
components each run as a child process on 127.0.0.1 and report their log
when they do not come up. :func:`stop_children` stops the children a
process lost track of: an exception a signal handler raises just as a spawn
returns (before its ``Popen`` is kept) loses a child that runs on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Callable

__all__ = ["child_setup", "die_with_parent", "free_port", "log_tail", "lower_priority", "running_children", "stop_children"]

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None
"""Loaded here, in the parent: a child between fork and exec must not load libraries."""


def child_setup(niceness: int = 0) -> Callable[[], None]:
    """A ``preexec_fn``: :func:`die_with_parent`, then lower the child's CPU priority.

    A positive ``niceness`` also puts the child under Linux's ``SCHED_IDLE`` policy: a
    normal process that wakes up (a shard with ticks to decide) takes the core from it
    at once, where a merely niced one could keep the core for the rest of its time slice.
    Measured with ``perf.outage``: ...
    """

    def setup() -> None:
        die_with_parent()
        lower_priority(niceness)

    return setup


def lower_priority(niceness: int) -> None:
    """Raise this process's niceness by ``niceness`` and, when positive, put it under ``SCHED_IDLE`` (Linux)."""
    if niceness:
        os.nice(niceness)
        if hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def die_with_parent() -> None:
    """``preexec_fn`` for a child that must not outlive its parent: SIGTERM when the parent dies.

    A SIGKILLed supervisor (or test run) would otherwise leave its Redis, broker, PostgreSQL
    and component processes running, holding ports and data directories. Linux only (a
    no-op elsewhere). The signal follows the *thread* that started the child: start
    children from a thread that lives as long as they should.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def log_tail(logfile: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a server's log, for error messages."""
    try:
        text = logfile.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log file)"
    return "\n".join(text[-lines:])


def running_children() -> list[int]:
    """The process ids of this process's children that still run (exited, unreaped ones not).

    Read from ``/proc`` (Linux); an empty list where there is none.
    """
    if sys.platform != "linux":
        return []
    me, found = os.getpid(), []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (command) state ppid ...": the command may hold spaces and parentheses.
            state, ppid = entry.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue  # it exited while we read
        if int(ppid) == me and state != "Z":
            found.append(int(entry.parent.name))
    return found


def stop_children(timeout: float = 5.0) -> list[int]:
    """SIGTERM every child of this process that still runs, then SIGKILL those left ``timeout`` seconds later.

    For a parent that stopped every child it knows of and must not leave one it lost
    track of. Waits for each to exit (at most ``timeout`` seconds after the SIGKILL too);
    returns the ids of those it found. Raises nothing.
    """
    children = running_children()
    left = children
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            _signal(pid, signum)
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [pid for pid in left if not _reaped(pid)]
        if not left:
            break
    return children


def _signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _reaped(pid: int) -> bool:
    """Whether our child ``pid`` has exited, reaping it (another waiter may have reaped it already)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True
