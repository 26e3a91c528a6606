"""Embedded Redis: Debian's ``redis-server`` run as a child process of ours.

This is the embedded default of docs/design.md ("Embedded default and production"):
AOF on, RDB snapshots off, a project-local data dir, 127.0.0.1 on a free port.
When a ``REDIS_URL`` is given nothing is started
(:func:`edge.embedded_server.given_or_embedded`). We never use the system
service Debian's package starts on port 6379.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from edge.debian_packages import locate_or_install
from edge.embedded_server import EmbeddedServer, is_executable
from edge.errors import EdgeError, RedisServerNotFound, RedisServerStartError

__all__ = [
    "EmbeddedRedis",
    "RedisServerNotFound",
    "RedisServerSettings",
    "RedisServerStartError",
    "find_redis_server",
]

_FALLBACK_BINARIES = (Path("/usr/bin/redis-server"), Path("/usr/sbin/redis-server"))
_NOT_FOUND = (
    "redis-server not found: install it with `apt-get install redis-server` "
    "or set REDIS_URL to a running Redis"
)


@dataclass(frozen=True)
class RedisServerSettings:
    """How the embedded Redis is run.

    ``binary`` pins the executable (``None`` searches PATH, then /usr/bin and
    /usr/sbin); ``install_if_missing`` lets a root process run
    ``apt-get install -y redis-server`` when no binary is found.
    """

    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    aof_rewrite_min_size_mb: int = 4096
    """Size the AOF must reach before Redis rewrites it by itself.

    Streams only grow, so a rewrite shrinks them little, yet it forks the
    server and writes the whole data set again: on a 2-core machine the
    default 64 MB made a rewrite every few seconds at 5,000 ticks/s and
    multiplied the hot path's p99 latency. Compact by hand with
    ``BGREWRITEAOF`` when convenient.
    """
    startup_timeout: float = 10.0
    binary: Path | None = None
    install_if_missing: bool = True

    def __post_init__(self) -> None:
        if self.appendfsync not in ("always", "everysec", "no"):
            msg = (
                f"appendfsync must be always, everysec or no, not {self.appendfsync!r}"
            )
            raise ValueError(msg)
        if self.aof_rewrite_min_size_mb < 1:
            msg = f"aof_rewrite_min_size_mb must be at least 1, not {self.aof_rewrite_min_size_mb!r}"
            raise ValueError(msg)
        if self.startup_timeout <= 0:
            msg = f"startup_timeout must be positive, not {self.startup_timeout!r}"
            raise ValueError(msg)


class EmbeddedRedis(EmbeddedServer):
    """A ``redis-server`` child process with AOF on and its files in ``data_dir``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    :meth:`start` raises :class:`RedisServerNotFound` when there is no binary
    (after trying to install one, when allowed and running as root) and
    :class:`RedisServerStartError` when the server does not answer PING within
    ``settings.startup_timeout`` seconds; that message ends with the tail of
    the server's log file.
    """

    server_name: ClassVar[str] = "redis-server"
    logfile_name: ClassVar[str] = "redis-server.log"
    readiness_question: ClassVar[str] = "PING"
    state_error: ClassVar[type[EdgeError]] = EdgeError
    start_error: ClassVar[type[RedisServerStartError]] = RedisServerStartError

    def __init__(
        self, data_dir: Path, settings: RedisServerSettings | None = None
    ) -> None:
        self._settings = settings or RedisServerSettings()
        super().__init__(data_dir, startup_timeout=self._settings.startup_timeout)

    @property
    def data_dir(self) -> Path:
        """The directory holding the AOF files and the log file."""
        return self._data_dir

    @property
    def address(self) -> str:
        """``redis://127.0.0.1:PORT/0``, what ``REDIS_URL`` would hold; raises EdgeError before start()."""
        return f"redis://127.0.0.1:{self.port}/0"

    url = address  # the name Redis clients use

    def find_binary(self) -> Path:
        """The ``redis-server`` executable (see :func:`find_redis_server`)."""
        return find_redis_server(self._settings)

    def command(self, binary: Path, port: int) -> list[str]:
        """``redis-server`` on ``port`` with AOF on, RDB snapshots off, logging to :attr:`logfile`."""
        return [
            str(binary),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(self._data_dir),
            "--appendonly", "yes",
            "--appendfsync", self._settings.appendfsync,
            "--auto-aof-rewrite-min-size", f"{self._settings.aof_rewrite_min_size_mb}mb",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.logfile),
        ]  # fmt: skip

    def answers(self) -> bool:
        """Whether the server answers PING."""
        with _client(self.port, timeout=0.5) as client:
            return _pings(client)

    def send_stop_signal(self, process: subprocess.Popen[bytes], stop_signal: signal.Signals) -> None:
        """SHUTDOWN NOSAVE instead of SIGTERM (no RDB snapshot: the AOF holds the data); SIGTERM if Redis does not answer."""
        if stop_signal == signal.SIGTERM:
            try:
                with _client(self._port or 0, timeout=2.0) as client:
                    client.shutdown(nosave=True)
            except redis.RedisError:
                pass
            else:
                return
        process.send_signal(stop_signal)


def find_redis_server(settings: RedisServerSettings | None = None) -> Path:
    """The ``redis-server`` executable, installing it with apt-get if allowed.

    Installing happens only when ``settings.install_if_missing`` is true, this
    process is root and apt-get exists. Raises RedisServerNotFound otherwise.
    """
    settings = settings or RedisServerSettings()
    path = locate_or_install(
        lambda: _locate(settings.binary),
        "redis-server",
        "redis-server not found: installing it with `apt-get install -y redis-server`",
        install_if_missing=settings.install_if_missing,
    )
    if path is None:
        raise RedisServerNotFound(_NOT_FOUND)
    return path


def _locate(binary: Path | None) -> Path | None:
    if binary is not None:
        return binary if is_executable(binary) else None
    found = shutil.which("redis-server")
    candidates = ([Path(found)] if found else []) + list(_FALLBACK_BINARIES)
    return next((path for path in candidates if is_executable(path)), None)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _client(port: int, timeout: float) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
