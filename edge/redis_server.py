"""Embedded Redis: Debian's ``redis-server`` run as a child process of ours.

This is the embedded default of docs/design.md ("Embedded default and production"):
AOF on, RDB snapshots off, a project-local data dir, 127.0.0.1 on a free port.
When a ``REDIS_URL`` is given nothing is started
(:func:`edge.embedded_server.given_or_embedded`). We never use the system
service Debian's package starts on port 6379.

A Redis that answers ``LOADING`` is starting, not dead: it replays its AOF
before it answers anything else. :class:`EmbeddedRedis` waits for it with
progress lines, up to :func:`startup_timeout_for` the AOF's size on disk;
:func:`wait_until_loaded` does the same for a Redis given by URL, sized by
what the server says it is loading.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from edge.debian_packages import locate_or_install
from edge.embedded_server import PROGRESS_EVERY, EmbeddedServer, is_executable
from edge.errors import EdgeError, RedisNotReady, RedisServerNotFound, RedisServerStartError
from glassbox import redact_url

__all__ = [
    "AOF_LOAD_BYTES_PER_S",
    "EmbeddedRedis",
    "LoadingProgress",
    "RedisNotReady",
    "RedisServerNotFound",
    "RedisServerSettings",
    "RedisServerStartError",
    "aof_bytes",
    "find_redis_server",
    "loading_progress",
    "redis_answers",
    "startup_timeout_for",
    "wait_until_loaded",
]

AOF_LOAD_BYTES_PER_S = 8 * 1024 * 1024
"""A conservative rate at which Redis replays an AOF at start-up, for the start-up timeout.

The slowest replay ``python -m perf.aof`` measured was 31.5 s for 1 GB of
never-rewritten AOF (33 MB/s), on the 2-core machine at a load average of
11; quiet, 10.4 s. A quarter of the slowest leaves room for a busier
machine: 1 GB of AOF is waited for 10 + 128 s.
"""
_MB = 1024 * 1024

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
    aof_rewrite_min_size_mb: int = 256
    """Size the AOF must reach before Redis rewrites it by itself (``auto-aof-rewrite-min-size``).

    256 MB, with :attr:`aof_rewrite_percentage` 100: Redis rewrites once the
    log is past 256 MB and has doubled since the last rewrite. Chosen from
    ``python -m perf.aof`` (4 runs on the 2-core machine, 1-minute load
    average 1.4 to 11 from other work; ticks plus 1 KB JSON-like events; the
    floor's steady load at 1,000 ticks/s, ``glassbox up``'s rate, which grows
    the log by 1.8 MB/s). Ranges are over the runs; "quiet" is the run at
    load 1.4:

    - a restart replays a never-rewritten log at 8 to 32 s per GB (quiet:
      0.5 s for 64 MB, 2.7 s for 256 MB, 10.4 s for 1 GB). The old 4 GB
      minimum let the log reach 4 GB unrewritten, about 30 to 130 s of
      replay: the start-up that timed out in issue 12. A rewrite shrinks
      1 GB to 610-720 MB, replayed in 6.2 to 14.4 s;
    - a rewrite lasts 0.7-1.3 s at 64 MB, 1.7-5.1 s at 256 MB and 5.5-16 s
      at 1 GB; its forked child uses 0.2-0.35, 1.0-1.3 and 3.9-5.1 CPU
      seconds, while the Redis process itself uses no more CPU than outside
      a rewrite (quiet: 9-24 % during against 22-26 % outside). The floor's
      latency pays for it: quiet, p50 1.1 -> 8.3 ms and p99 12 -> 79 ms at
      64 MB, p50 1.2 -> 19 ms and p99 30 -> 71 ms at 256 MB, p50 0.9 -> 1.6 ms
      and p99 5.4 -> 19 ms at 1 GB.

    So a rewrite costs a few seconds of p99 2 to 7 times higher (quiet; in
    the busy runs other work's spikes hid it), at every size; the time
    between rewrites grows with the log (it must grow by its rewritten size
    again before the next), so at 1.8 MB/s a 1 GB log (610 MB after
    its rewrite) is rewritten about every 6 minutes for 5.5-16 s, 2-5 % of
    the time (arithmetic from the figures above). At 5,000 ticks/s the log
    grows by 8.9 MB/s, so rewrites come five times as often; one run there
    (quiet) rewrote 256 MB in 1.4 s, p99 9.7 -> 18 ms. 256 MB keeps a young system's restart to a few seconds;
    Redis's own 64 MB would rewrite a 64 MB log (43 MB after) every 24 s.
    """
    aof_rewrite_percentage: int = 100
    """Growth over the last rewrite's size that triggers the next one (``auto-aof-rewrite-percentage``; 0: never)."""
    startup_timeout: float = 10.0
    """Seconds to wait for an answer before any AOF is replayed; :func:`startup_timeout_for` adds the replay."""
    aof_load_bytes_per_s: float = AOF_LOAD_BYTES_PER_S
    """The replay rate the start-up timeout assumes (see :data:`AOF_LOAD_BYTES_PER_S`)."""
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
        if self.aof_rewrite_percentage < 0:
            msg = f"aof_rewrite_percentage must be 0 (never) or more, not {self.aof_rewrite_percentage!r}"
            raise ValueError(msg)
        if self.startup_timeout <= 0:
            msg = f"startup_timeout must be positive, not {self.startup_timeout!r}"
            raise ValueError(msg)
        if not self.aof_load_bytes_per_s > 0:
            msg = f"aof_load_bytes_per_s must be positive, not {self.aof_load_bytes_per_s!r}"
            raise ValueError(msg)


def startup_timeout_for(aof_size: int, base: float, load_bytes_per_s: float) -> float:
    """Seconds to wait for a Redis replaying ``aof_size`` bytes of AOF: ``base`` plus the replay's time.

    A fixed timeout declared a Redis dead that was only loading a few hundred
    MB on a busy machine; the replay grows with the log, so the wait does too.
    """
    return base + max(aof_size, 0) / load_bytes_per_s


def aof_bytes(data_dir: Path) -> int:
    """Bytes of AOF Redis replays at start from ``data_dir``.

    Redis 7 keeps a base, increments and a manifest in ``appendonlydir``;
    older ones a single ``appendonly.aof``.
    """
    files = [*Path(data_dir).glob("appendonlydir/*"), Path(data_dir) / "appendonly.aof"]
    total = 0
    for path in files:
        try:
            total += path.stat().st_size
        except OSError:  # gone meanwhile, or never there
            continue
    return total


@dataclass(frozen=True)
class LoadingProgress:
    """How far a Redis is in loading its data set (INFO persistence while ``loading:1``)."""

    loaded_bytes: int
    total_bytes: int
    percent: float
    eta_seconds: float | None

    def __str__(self) -> str:
        eta = f", about {self.eta_seconds:.0f} s left" if self.eta_seconds is not None else ""
        return f"loading the AOF, {self.percent:.0f}% of {self.total_bytes / _MB:,.0f} MB{eta}"


def loading_progress(client: redis.Redis) -> LoadingProgress | None:
    """The progress of a Redis still loading its data set, or None when it is not loading.

    INFO is one of the few commands Redis answers while it loads. Raises
    ``redis.RedisError`` when it does not answer at all.
    """
    info = client.info("persistence")
    if not int(info.get("loading", 0)):
        return None
    eta = float(info.get("loading_eta_seconds", -1))
    return LoadingProgress(
        loaded_bytes=int(info.get("loading_loaded_bytes", 0)),
        total_bytes=int(info.get("loading_total_bytes", 0)),
        percent=float(info.get("loading_loaded_perc", 0.0)),
        eta_seconds=eta if eta >= 0 else None,
    )


def wait_until_loaded(url: str, settings: RedisServerSettings | None = None,
                      progress: Callable[[str], None] = lambda line: None) -> None:
    """Return once the Redis at ``url`` answers PING, waiting while it answers ``LOADING``.

    For a Redis given by ``REDIS_URL``: one still replaying its AOF after a
    restart is waited for, with a progress line every few seconds, up to
    :func:`startup_timeout_for` the size it says it loads. Raises
    :class:`RedisNotReady` when it does not answer at all, or is still
    loading at the deadline.
    """
    settings = settings or RedisServerSettings()
    client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0, retry=Retry(NoBackoff(), 0))
    started = next_line = time.monotonic()
    deadline: float | None = None
    sized = False
    try:
        while True:
            try:
                client.ping()
            except redis.BusyLoadingError:
                pass
            except redis.RedisError as error:
                msg = f"Redis at {redact_url(url)} does not answer ({error}): start it, or fix REDIS_URL"
                raise RedisNotReady(msg) from error
            else:
                return
            loading = _progress_or_none(client)
            now = time.monotonic()
            if deadline is None or (loading and not sized):
                # Computed again once the size is known: INFO can fail while the first LOADING is answered.
                sized = loading is not None
                size = loading.total_bytes if loading else 0
                deadline = started + startup_timeout_for(size, settings.startup_timeout, settings.aof_load_bytes_per_s)
            if now > deadline:
                msg = (f"Redis at {redact_url(url)} is still loading its data set ({loading or 'LOADING'}) "
                       "past the start-up timeout: wait for it and start again")
                raise RedisNotReady(msg)
            if loading and now >= next_line:
                next_line = now + PROGRESS_EVERY
                progress(f"{loading} ...")
            time.sleep(0.1)
    finally:
        client.close()


def _progress_or_none(client: redis.Redis) -> LoadingProgress | None:
    try:
        return loading_progress(client)
    except redis.RedisError:
        return None


class EmbeddedRedis(EmbeddedServer):
    """A ``redis-server`` child process with AOF on and its files in ``data_dir``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`;
    :meth:`restart` starts it again on its data dir and port after it died.
    :meth:`start` raises :class:`RedisServerNotFound` when there is no binary
    (after trying to install one, when allowed and running as root) and
    :class:`RedisServerStartError` when the server exits, or does not answer
    PING within :func:`startup_timeout_for` its AOF's size; that message ends
    with the tail of the server's log file. While the server answers
    ``LOADING`` it is waited for, and ``progress`` gets a line every few
    seconds ("loading the AOF, 43% of 812 MB, about 12 s left ...").
    """

    server_name: ClassVar[str] = "redis-server"
    logfile_name: ClassVar[str] = "redis-server.log"
    readiness_question: ClassVar[str] = "PING"
    state_error: ClassVar[type[EdgeError]] = EdgeError
    start_error: ClassVar[type[RedisServerStartError]] = RedisServerStartError

    def __init__(
        self, data_dir: Path, settings: RedisServerSettings | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings or RedisServerSettings()
        super().__init__(data_dir, startup_timeout=self._settings.startup_timeout, progress=progress)

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
            "--auto-aof-rewrite-percentage", str(self._settings.aof_rewrite_percentage),
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.logfile),
        ]  # fmt: skip

    def answers(self) -> bool:
        """Whether the server answers PING (``LOADING`` is not an answer yet)."""
        return redis_answers(self.url, timeout=0.5)

    def starting_progress(self) -> str | None:
        """How far the AOF replay is, while the server answers ``LOADING``."""
        with _client(self.port, timeout=0.5) as client:
            loading = _progress_or_none(client)
        return str(loading) if loading else None

    def startup_timeout(self) -> float:
        """The base start-up timeout plus the replay of the AOF now in the data dir."""
        return startup_timeout_for(aof_bytes(self._data_dir), self._settings.startup_timeout,
                                   self._settings.aof_load_bytes_per_s)

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


def redis_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether the Redis at ``url`` answers PING within ``timeout`` seconds (``LOADING`` is not an answer yet).

    One bounded probe, never retried: the embedded server's health check and the supervisor's watch of a given one.
    """
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                  retry=Retry(NoBackoff(), 0))
    try:
        return _pings(client)
    finally:
        client.close()


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
