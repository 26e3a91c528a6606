"""What every embedded service launcher needs: a free loopback port and its log's tail.

The launchers (Redis in ``edge``, the Kafka-protocol broker in ``backbone``,
PostgreSQL in ``projections``) each run one server as a child process on
127.0.0.1 and report its log when it does not come up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

__all__ = [
    "PORT_ATTEMPTS", "child_setup", "die_with_parent", "free_port", "log_tail", "start_on_a_free_port", "wait_until_answers",
]

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
        if niceness:
            os.nice(niceness)
            if hasattr(os, "SCHED_IDLE"):
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))

    return setup


def die_with_parent() -> None:
    """``preexec_fn`` for a child that must not outlive its parent: SIGTERM when the parent dies.

    A SIGKILLed supervisor (or test run) would otherwise leave its Redis, broker, PostgreSQL
    and component processes running, holding ports and data directories. Linux only (a
    no-op elsewhere). The signal follows the *thread* that started the child: start
    children from a thread that lives as long as they should.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

PORT_ATTEMPTS = 3
"""Starts to try: another process may take a free port before the server binds it."""


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


def wait_until_answers(
    process: subprocess.Popen[bytes], answers: Callable[[], bool], timeout: float, question: str
) -> str | None:
    """Poll ``answers()`` until it is true; None then, else why not (the process exited, or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            return f"exited with code {process.returncode}"
        if answers():
            return None
        if time.monotonic() > deadline:
            return f"did not answer {question} within {timeout} s"
        time.sleep(0.05)


def start_on_a_free_port(
    start_on: Callable[[int], None],
    stop: Callable[[], None],
    port_taken: Callable[[], bool],
    start_error: type[Exception],
    port: int | None = None,
) -> int:
    """Run ``start_on(port)`` on a free port, on another one if the first was taken meanwhile.

    ``start_on`` raises ``start_error`` when the server did not come up; then
    ``stop()`` cleans up and, if ``port_taken()`` says the port was the
    reason, the next free port is tried (up to :data:`PORT_ATTEMPTS`). A
    fixed ``port`` is tried once. Returns the port the server listens on.
    """
    attempts = 1 if port else PORT_ATTEMPTS
    for attempt in range(1, attempts + 1):
        chosen = port or free_port()
        try:
            start_on(chosen)
        except start_error:
            taken = port_taken()
            stop()
            if not taken or attempt == attempts:
                raise
        else:
            return chosen
    raise AssertionError("unreachable: the last attempt returns or raises")
