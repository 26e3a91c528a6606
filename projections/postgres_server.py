"""Embedded PostgreSQL: the machine's PostgreSQL server run as a child process of ours.

This is the embedded default of docs/design.md ("Embedded default and production"):
a project-local cluster (``initdb`` the first time, reused afterwards), fsync
on, 127.0.0.1 on a free port, trust authentication on loopback only, a
superuser and a database both named ``glassbox``. PostgreSQL refuses to run
as root, so a root process runs ``initdb`` and ``postgres`` as an unprivileged
user (Debian's ``postgres``). When a ``DATABASE_URL`` is given nothing is
started (:func:`edge.embedded_server.given_or_embedded`). We never touch
the system service Debian's package sets up on port 5432.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import psycopg
from psycopg import sql

from edge.debian_packages import locate_or_install
from edge.embedded_server import EmbeddedServer, ServerNotFound, ServerStartError, is_executable
from glassbox import GlassboxError

__all__ = [
    "EmbeddedPostgres",
    "PostgresServerError",
    "PostgresServerNotFound",
    "PostgresServerPermissionError",
    "PostgresServerSettings",
    "PostgresServerStartError",
    "find_postgres_binaries",
    "reachable_data_dir",
    "remove_stale_pid_file",
]

_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_SERVER_BINARIES = ("initdb", "postgres")
_OUTPUT_TAIL_LINES = 20
_INITDB_TIMEOUT = 120.0  # initdb fsyncs the whole new cluster: slow disks take a while
_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class PostgresServerError(GlassboxError):
    """Root of the errors the embedded PostgreSQL launcher raises on purpose."""


class PostgresServerNotFound(PostgresServerError, ServerNotFound):
    """No PostgreSQL server binaries, and none could be installed."""


class PostgresServerPermissionError(PostgresServerError):
    """Started as root, but there is no usable unprivileged user or data dir for it."""


class PostgresServerStartError(PostgresServerError, ServerStartError):
    """The binaries were found but ``initdb`` failed or the server did not answer in time."""


@dataclass(frozen=True)
class PostgresServerSettings:
    """How the embedded PostgreSQL is run.

    ``binary_dir`` pins the directory holding ``initdb`` and ``postgres``
    (``None`` searches /usr/lib/postgresql/*/bin preferring ``major_version``,
    then PATH); ``install_if_missing`` lets a root process run
    ``apt-get install -y postgresql-<major_version>`` when none is found.
    ``run_as_user`` is used only when this process is root.
    """

    major_version: int = 15
    binary_dir: Path | None = None
    install_if_missing: bool = True
    run_as_user: str = "postgres"
    superuser: str = "glassbox"
    database: str = "glassbox"
    startup_timeout: float = 30.0
    niceness: int = 0
    """Lower CPU priority: the supervisor runs the backbone below the hot path."""

    def __post_init__(self) -> None:
        if self.major_version < 1:
            msg = f"major_version must be positive, not {self.major_version!r}"
            raise ValueError(msg)
        for name in ("run_as_user", "superuser", "database"):
            if not getattr(self, name):
                msg = f"{name} must not be empty"
                raise ValueError(msg)
        if self.startup_timeout <= 0:
            msg = f"startup_timeout must be positive, not {self.startup_timeout!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class _Account:
    """The unprivileged user a root process runs the server as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def popen_kwargs(self) -> dict[str, object]:
        # extra_groups replaces root's supplementary groups (group 0 among them).
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


class EmbeddedPostgres(EmbeddedServer):
    """A ``postgres`` child process serving the cluster in ``data_dir``.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    :meth:`start` creates the cluster if needed and raises
    :class:`PostgresServerNotFound` when there are no binaries (after trying
    to install them, when allowed and running as root),
    :class:`PostgresServerPermissionError` when running as root without a
    usable unprivileged user or data dir, and :class:`PostgresServerStartError`
    when ``initdb`` fails or the server does not answer ``SELECT 1`` within
    ``settings.startup_timeout`` seconds; that message ends with the tail of
    the server's log file.

    :meth:`stop` is a fast shutdown (SIGINT to the postmaster, as ``pg_ctl
    stop -m fast``): open sessions are disconnected and a checkpoint is
    written. It escalates to an immediate shutdown (SIGQUIT), then SIGKILL,
    if the server does not exit.

    A ``port`` pins where it listens (else a free port each start), so a
    server stopped and started again is back where its clients reconnect.
    """

    server_name: ClassVar[str] = "postgres"
    logfile_name: ClassVar[str] = "postgres.log"
    readiness_question: ClassVar[str] = "SELECT 1"
    state_error: ClassVar[type[PostgresServerError]] = PostgresServerError
    start_error: ClassVar[type[PostgresServerStartError]] = PostgresServerStartError
    stop_signals: ClassVar[tuple[signal.Signals, ...]] = (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL)
    stop_timeout: ClassVar[float] = 60.0  # a fast shutdown still writes a checkpoint

    def __init__(
        self, data_dir: Path, settings: PostgresServerSettings | None = None, *, port: int | None = None
    ) -> None:
        """``port``: listen there (tried once, as clients expect it there) instead of on a free port."""
        self._settings = settings or PostgresServerSettings()
        super().__init__(
            data_dir, startup_timeout=self._settings.startup_timeout, niceness=self._settings.niceness, port=port
        )
        self._account: _Account | None = None

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (PGDATA); it also holds the log and the socket."""
        return self._data_dir

    @property
    def address(self) -> str:
        """``postgresql://glassbox@127.0.0.1:PORT/glassbox``, what ``DATABASE_URL`` would hold; raises before start()."""
        return self._url(self._settings.database)

    url = address  # the name psycopg uses

    def find_binary(self) -> Path:
        """The directory holding ``initdb`` and ``postgres`` (see :func:`find_postgres_binaries`)."""
        return find_postgres_binaries(self._settings)

    def on_prepare(self, binary: Path) -> None:
        """Choose the server's account, give it the data dir, and ``initdb`` a new cluster there.

        Raises PostgresServerPermissionError or PostgresServerStartError.
        """
        self._account = _server_account(self._settings.run_as_user)
        self._prepare_data_dir(self._account)
        if not (self._data_dir / "PG_VERSION").is_file():
            self._initdb(binary, self._account)
        remove_stale_pid_file(self._data_dir)
        if self._account is not None:
            # The server appends to the log we create: created after initdb, which wants an empty dir.
            self.logfile.touch()
            os.chown(self.logfile, self._account.uid, self._account.gid)

    def command(self, binary: Path, port: int) -> list[str]:
        """``postgres`` on the cluster in :attr:`data_dir`, on 127.0.0.1:``port``, fsync on."""
        return [
            str(binary / "postgres"),
            "-D", str(self._data_dir),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"port={port}",
            "-c", f"unix_socket_directories={self._socket_dir(port)}",
            "-c", "fsync=on",
            "-c", "logging_collector=off",  # we own the log file: keep it one file
        ]  # fmt: skip

    def popen_options(self) -> dict[str, object]:
        """Run in the data dir, as the unprivileged account when we are root."""
        return {"cwd": self._data_dir, **(self._account.popen_kwargs() if self._account else {})}

    def answers(self) -> bool:
        """Whether the server answers ``SELECT 1`` in the ``postgres`` database."""
        return postgres_answers(self._url("postgres"))

    def on_ready(self) -> None:
        """Create the configured database when it is missing; raises PostgresServerStartError."""
        try:
            self._ensure_database()
        except psycopg.Error as error:
            msg = f"could not create database {self._settings.database!r}: {error}"
            raise PostgresServerStartError(msg) from error

    def _url(self, database: str) -> str:
        user = quote(self._settings.superuser, safe="")
        return f"postgresql://{user}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def _prepare_data_dir(self, account: _Account | None) -> None:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            _check_reachable(self._data_dir, account)
            os.chown(self._data_dir, account.uid, account.gid)
        # PostgreSQL refuses a data dir that group or others can read.
        self._data_dir.chmod(0o700)

    def _initdb(self, bin_dir: Path, account: _Account | None) -> None:
        command = [
            str(bin_dir / "initdb"),
            "--pgdata", str(self._data_dir),
            "--username", self._settings.superuser,
            # initdb's trust lines cover the socket and 127.0.0.1/::1 only; the
            # socket sits in the 0700 data dir, and we listen on 127.0.0.1.
            "--auth", "trust",
            "--encoding", "UTF8",
            "--no-locale",  # the same collation on every machine
            "--no-instructions",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command,
                cwd=self._data_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_INITDB_TIMEOUT,
                check=False,
                **(account.popen_kwargs() if account else {}),
            )
        except subprocess.TimeoutExpired as error:
            msg = f"initdb did not finish within {_INITDB_TIMEOUT} s in {self._data_dir}"
            raise PostgresServerStartError(msg) from error
        if done.returncode:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-_OUTPUT_TAIL_LINES:])
            msg = f"initdb failed with code {done.returncode} in {self._data_dir}:\n{tail}"
            raise PostgresServerStartError(msg)

    def _socket_dir(self, port: int) -> str:
        # A data dir too deep for a socket path would make postgres fail to
        # start; we connect over TCP anyway, so go without the socket then.
        socket_path = self._data_dir / f".s.PGSQL.{port}"
        return str(self._data_dir) if len(str(socket_path)) <= _SOCKET_PATH_MAX else ""

    def _ensure_database(self) -> None:
        # Done on every start, so a first start that died before it is repaired.
        name = self._settings.database
        with psycopg.connect(self._url("postgres"), autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if found is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def remove_stale_pid_file(data_dir: Path) -> bool:
    """Remove ``data_dir/postmaster.pid`` when no live postgres process works in ``data_dir``; whether it did.

    A postmaster that was killed leaves its pid file behind. PostgreSQL itself
    ignores one whose pid is gone, but refuses to start when that pid was
    meanwhile reused by another process of its user. The file also guards the
    cluster against the killed postmaster's orphaned backends (PostgreSQL
    checks the shared memory it names), so it is removed only when no live
    ``postgres`` process (postmaster or backend: each runs in its data dir)
    has ``data_dir`` as its working directory. When that cannot be told (a
    process we may not inspect), the file stays and PostgreSQL decides.
    """
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists() or _postgres_works_in(data_dir.resolve()):
        return False
    pid_file.unlink(missing_ok=True)
    return True


def _postgres_works_in(data_dir: Path) -> bool:
    """Whether a live postgres process may have ``data_dir`` as its working directory."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() not in ("postgres", "postmaster"):
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # exited, only not yet reaped
            if Path(os.readlink(proc / "cwd")) == data_dir:
                return True
        except PermissionError:
            return True  # cannot tell: leave the decision to PostgreSQL
        except (OSError, IndexError):
            continue  # it exited meanwhile
    return False


def reachable_data_dir(preferred: Path, settings: PostgresServerSettings | None = None) -> Path:
    """``preferred`` when the server's account can reach it, else a stable directory it can.

    Under root the server runs as an unprivileged user, which cannot enter a
    checkout in a 0700 directory (``mktemp -d``, a home directory). Then the
    data goes to ``/var/tmp/glassbox-<hash of preferred>/postgres``, the
    same one every run from that checkout.
    """
    settings = settings or PostgresServerSettings()
    account = _server_account(settings.run_as_user)
    if account is None:
        return preferred
    try:
        _check_reachable(preferred, account)
    except PostgresServerPermissionError:
        digest = hashlib.sha1(str(preferred.resolve()).encode()).hexdigest()[:12]
        parent = Path("/var/tmp" if Path("/var/tmp").is_dir() else tempfile.gettempdir()) / f"glassbox-{digest}"
        parent.mkdir(parents=True, exist_ok=True)
        parent.chmod(0o711)
        return parent / "postgres"
    return preferred


def find_postgres_binaries(settings: PostgresServerSettings | None = None) -> Path:
    """The directory holding ``initdb`` and ``postgres``, installing them if allowed.

    Installing happens only when ``settings.install_if_missing`` is true, this
    process is root and apt-get exists. Raises PostgresServerNotFound otherwise.
    """
    settings = settings or PostgresServerSettings()
    package = f"postgresql-{settings.major_version}"
    found = locate_or_install(
        lambda: _locate(settings),
        package,
        f"PostgreSQL server binaries not found: installing them with `apt-get install -y {package}`",
        install_if_missing=settings.install_if_missing,
    )
    if found is None:
        msg = (
            "PostgreSQL server binaries not found: install them with "
            f"`apt-get install postgresql-{settings.major_version}` or set DATABASE_URL"
        )
        raise PostgresServerNotFound(msg)
    return found


def _locate(settings: PostgresServerSettings) -> Path | None:
    if settings.binary_dir is not None:
        candidates = [Path(settings.binary_dir)]
    else:
        preferred = _DEBIAN_ROOT / str(settings.major_version) / "bin"
        others = sorted(_DEBIAN_ROOT.glob("*/bin"), key=_major_of, reverse=True)
        on_path = shutil.which("initdb")
        candidates = [preferred, *others, *([Path(on_path).parent] if on_path else [])]
    return next((path for path in candidates if _has_server_binaries(path)), None)


def _major_of(bin_dir: Path) -> int:
    name = bin_dir.parent.name
    return int(name) if name.isdigit() else -1


def _has_server_binaries(bin_dir: Path) -> bool:
    return all(is_executable(bin_dir / name) for name in _SERVER_BINARIES)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _server_account(user: str) -> _Account | None:
    """Who runs initdb and postgres: ``None`` (this process) unless we are root."""
    if not _is_root():
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        msg = (
            f"PostgreSQL refuses to run as root and there is no user {user!r} to run "
            f"it as: create one (`adduser --system {user}`), set run_as_user to "
            "another unprivileged user, or run Glassbox as a non-root user"
        )
        raise PostgresServerPermissionError(msg) from None
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _check_reachable(data_dir: Path, account: _Account) -> None:
    """Raise when ``account`` cannot enter every directory above ``data_dir``."""
    for parent in reversed(data_dir.parents):
        info = parent.stat()
        if info.st_mode & stat.S_IXOTH:
            continue
        if info.st_uid == account.uid and info.st_mode & stat.S_IXUSR:
            continue
        if info.st_gid in account.groups and info.st_mode & stat.S_IXGRP:
            continue
        owner = _user_name(info.st_uid)
        mode = stat.S_IMODE(info.st_mode)
        msg = (
            f"PostgreSQL runs as user {account.name!r} (it refuses to run as root), "
            f"which cannot enter {parent} (mode {mode:04o}, owner {owner}): choose a "
            f"data dir it can reach, or let it pass with `chmod o+x {parent}`"
        )
        raise PostgresServerPermissionError(msg)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def postgres_answers(url: str, timeout: int = 2) -> bool:
    """Whether the PostgreSQL at ``url`` answers ``SELECT 1`` within ``timeout`` seconds to connect.

    The embedded server's health check and the supervisor's watch of a given one.
    """
    try:
        with psycopg.connect(url, connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False  # refused, or "the database system is starting up"
    return True
