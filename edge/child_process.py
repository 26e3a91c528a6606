"""What every embedded service launcher needs: a free loopback port and its log's tail.

The launchers (Redis in ``edge``, the Kafka-protocol broker in ``backbone``,
PostgreSQL in ``projections``) each run one server as a child process on
127.0.0.1 and report its log when it does not come up.
"""

from __future__ import annotations

import socket
from pathlib import Path

__all__ = ["PORT_ATTEMPTS", "free_port", "log_tail"]

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
