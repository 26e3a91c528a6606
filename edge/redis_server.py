"""Embedded Redis: Debian's ``redis-server`` run as a child process of ours.

This is the embedded default of docs/design.md ("Embedded default and production"):
AOF on, RDB snapshots off, a project-local data dir, 127.0.0.1 on a free port.
When a ``REDIS_URL`` is given nothing is started (:func:`redis_url_or_embedded`).
We never use the system service Debian's package starts on port 6379.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from edge.child_process import (
    die_with_parent,
    log_tail,
    start_on_a_free_port,
    wait_until_answers,
)
from glassbox import GlassboxError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType
    from typing import Self

__all__ = [
    "EdgeError",
    "EmbeddedRedis",
    "RedisServerNotFound",
    "RedisServerSettings",
    "RedisServerStartError",
    "find_redis_server",
    "redis_url_or_embedded",
]

_FALLBACK_BINARIES = (Path("/usr/bin/redis-server"), Path("/usr/sbin/redis-server"))
_NOT_FOUND = (
    "redis-server not found: install it with `apt-get install redis-server` "
    "or set REDIS_URL to a running Redis"
)


class EdgeError(GlassboxError):
    """Root of the errors the ``edge`` adapters raise on purpose."""


class RedisServerNotFound(EdgeError):
    """No ``redis-server`` binary, and none could be installed."""


class RedisServerStartError(EdgeError):
    """``redis-server`` was found but did not answer PING in time."""

    retriable = True


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


class EmbeddedRedis:
    """A ``redis-server`` child process with AOF on and its files in ``data_dir``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    :meth:`start` raises :class:`RedisServerNotFound` when there is no binary
    (after trying to install one, when allowed and running as root) and
    :class:`RedisServerStartError` when the server does not answer PING within
    ``settings.startup_timeout`` seconds; that message ends with the tail of
    the server's log file.
    """

    def __init__(
        self, data_dir: Path, settings: RedisServerSettings | None = None
    ) -> None:
        self._data_dir = Path(data_dir).resolve()  # redis chdirs before opening files
        self._settings = settings or RedisServerSettings()
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def data_dir(self) -> Path:
        """The directory holding the AOF files and the log file."""
        return self._data_dir

    @property
    def logfile(self) -> Path:
        """The server's log file (its stdout and stderr go there too)."""
        return self._data_dir / "redis-server.log"

    @property
    def port(self) -> int:
        """The TCP port the server listens on; raises EdgeError before start()."""
        if self._port is None or self._process is None:
            msg = "EmbeddedRedis is not running: call start() or use it in a with block"
            raise EdgeError(msg)
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``; raises EdgeError before start()."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING.

        Raises RedisServerNotFound, RedisServerStartError, or EdgeError when
        already started.
        """
        if self._process is not None:
            msg = "EmbeddedRedis is already running"
            raise EdgeError(msg)
        binary = find_redis_server(self._settings)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        start_on_a_free_port(
            lambda port: self._start_on(binary, port),
            self.stop,
            lambda: "Address already in use" in self._log_tail(),
            RedisServerStartError,
        )

    def _start_on(self, binary: Path, port: int) -> None:
        self._port = port
        self._process = self._spawn(binary, port)
        self._wait_until_ready()

    def stop(self) -> None:
        """Shut the server down (SHUTDOWN NOSAVE, else SIGTERM, else SIGKILL).

        Does nothing when it is not running. Raises nothing on purpose.
        """
        process, port = self._process, self._port
        self._process = None
        if process is None:
            return
        if process.poll() is None:
            try:
                with _client(port or 0, timeout=2.0) as client:
                    client.shutdown(nosave=True)
            except redis.RedisError:
                process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

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

    def _spawn(self, binary: Path, port: int) -> subprocess.Popen[bytes]:
        command = [
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
        # Config errors are printed before the log file is opened: keep them too.
        with self.logfile.open("ab") as output:
            return subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                preexec_fn=die_with_parent,
                start_new_session=True,  # a terminal's Ctrl-C is for our process: it stops us in order
            )

    def _wait_until_ready(self) -> None:
        process, port = self._process, self._port
        if process is None or port is None:
            msg = "EmbeddedRedis is not running"
            raise EdgeError(msg)
        with _client(port, timeout=0.5) as client:
            reason = wait_until_answers(process, lambda: _pings(client), self._settings.startup_timeout, "PING")
        if reason is None:
            return
        msg = (
            f"redis-server on port {port} {reason}; "
            f"log {self.logfile} ends:\n{self._log_tail()}"
        )
        raise RedisServerStartError(msg)

    def _log_tail(self) -> str:
        return log_tail(self.logfile)


@contextmanager
def redis_url_or_embedded(
    url: str | None, data_dir: Path, settings: RedisServerSettings | None = None
) -> Iterator[str]:
    """Yield ``url`` when given (starting nothing), else the URL of an EmbeddedRedis.

    An empty string counts as not given. Raises what EmbeddedRedis.start() raises.
    """
    if url:
        yield url
        return
    with EmbeddedRedis(data_dir, settings) as server:
        yield server.url


def find_redis_server(settings: RedisServerSettings | None = None) -> Path:
    """The ``redis-server`` executable, installing it with apt-get if allowed.

    Installing happens only when ``settings.install_if_missing`` is true, this
    process is root and apt-get exists. Raises RedisServerNotFound otherwise.
    """
    settings = settings or RedisServerSettings()
    path = _locate(settings.binary)
    if path is None and settings.install_if_missing and _can_install():
        _install_redis_server()
        path = _locate(settings.binary)
    if path is None:
        raise RedisServerNotFound(_NOT_FOUND)
    return path


def _locate(binary: Path | None) -> Path | None:
    if binary is not None:
        return binary if _is_executable(binary) else None
    found = shutil.which("redis-server")
    candidates = ([Path(found)] if found else []) + list(_FALLBACK_BINARIES)
    return next((path for path in candidates if _is_executable(path)), None)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _can_install() -> bool:
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    return is_root and shutil.which("apt-get") is not None


def _install_redis_server() -> None:
    print(
        "redis-server not found: installing it with `apt-get install -y redis-server`",
        file=sys.stderr,
        flush=True,
    )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "redis-server"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode:
        # A fresh machine often has no package lists yet.
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False)


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
