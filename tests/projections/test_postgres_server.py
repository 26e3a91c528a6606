"""EmbeddedPostgres runs the machine's PostgreSQL on a project-local cluster."""

from __future__ import annotations

import os
import pwd
import stat
from typing import TYPE_CHECKING

import psycopg
import pytest

from projections.postgres_server import (
    EmbeddedPostgres,
    PostgresServerError,
    PostgresServerNotFound,
    PostgresServerPermissionError,
    PostgresServerSettings,
    PostgresServerStartError,
    reachable_data_dir,
)
from tests.edge.embedded_server_contract import EmbeddedServerContract, write_script

if TYPE_CHECKING:
    from pathlib import Path

IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="the root-specific path needs root")


def _server_uid() -> int:
    return pwd.getpwnam("postgres").pw_uid if IS_ROOT else os.getuid()


def _fake_binaries(bin_dir: Path, initdb: str, postgres: str) -> Path:
    bin_dir.mkdir(mode=0o755)
    write_script(bin_dir / "initdb", initdb)
    write_script(bin_dir / "postgres", postgres)
    return bin_dir


class TestEmbeddedPostgres(EmbeddedServerContract):
    launcher = EmbeddedPostgres
    not_found_error = PostgresServerNotFound
    start_error = PostgresServerStartError
    state_error = PostgresServerError
    given_address = "postgresql://someone:secret@db.invalid:5432/glassbox"

    @pytest.fixture
    def server_dir(self, pg_dir: Path) -> Path:
        return pg_dir  # under root the server's own user must reach it

    def construct_server_without_binary(self, data_dir: Path) -> EmbeddedPostgres:
        empty = data_dir.parent / "empty-bin"
        empty.mkdir(exist_ok=True)
        return EmbeddedPostgres(data_dir, PostgresServerSettings(binary_dir=empty, install_if_missing=False))

    def construct_server_that_exits(self, data_dir: Path, bin_dir: Path, body: str) -> EmbeddedPostgres:
        # initdb is called as: initdb --pgdata DIR ...
        _fake_binaries(bin_dir, initdb='echo 15 > "$2/PG_VERSION"', postgres=body)
        return EmbeddedPostgres(data_dir, PostgresServerSettings(binary_dir=bin_dir))

    def expected_address(self, port: int) -> str:
        return f"postgresql://glassbox@127.0.0.1:{port}/glassbox"

    def not_found_message(self, data_dir: Path) -> str:
        return (
            "PostgreSQL server binaries not found: install them with "
            "`apt-get install postgresql-15` or set DATABASE_URL"
        )

    def client_answers(self, address: str) -> bool:
        try:
            with psycopg.connect(address, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True


def test_starts_a_cluster_in_its_data_dir_then_reuses_it(pg_dir: Path) -> None:
    data_dir = pg_dir / "postgres"
    with EmbeddedPostgres(data_dir) as server:
        assert server.url == f"postgresql://glassbox@127.0.0.1:{server.port}/glassbox"
        with psycopg.connect(server.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_user, current_database(), pg_backend_pid(),"
                " current_setting('fsync'), current_setting('listen_addresses'),"
                " current_setting('unix_socket_directories'),"
                " current_setting('data_directory'), current_setting('server_encoding')"
            ).fetchone()
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('written before the restart')")
            # Read while the connection is open: its backend process ends with it.
            backend_uid = os.stat(f"/proc/{row[2]}").st_uid
        user, database, backend_pid, fsync, listen, socket_dir, pgdata, encoding = row
        assert (user, database, fsync, listen, encoding) == (
            "glassbox", "glassbox", "on", "127.0.0.1", "UTF8",
        )  # fmt: skip
        assert socket_dir == pgdata == str(data_dir.resolve())
        # The server runs as the unprivileged user when we are root.
        assert backend_uid == _server_uid()
    info = data_dir.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == _server_uid()
    assert "database system is ready" in server.logfile.read_text()
    with pytest.raises(PostgresServerError):
        _ = server.url  # stopped

    cluster_created = (data_dir / "PG_VERSION").stat().st_mtime_ns
    with EmbeddedPostgres(data_dir) as again, psycopg.connect(again.url) as conn:
        kept = conn.execute("SELECT note FROM kept").fetchall()
    assert kept == [("written before the restart",)]
    assert (data_dir / "PG_VERSION").stat().st_mtime_ns == cluster_created  # no initdb


@root_only
def test_root_without_the_server_user_is_told_what_to_do(pg_dir: Path) -> None:
    settings = PostgresServerSettings(run_as_user="glassbox-no-such-user")
    with pytest.raises(PostgresServerPermissionError) as raised:
        EmbeddedPostgres(pg_dir / "postgres", settings).start()
    message = str(raised.value)
    assert "refuses to run as root" in message
    assert "adduser --system glassbox-no-such-user" in message


@root_only
def test_root_data_dir_the_server_user_cannot_enter_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(PostgresServerPermissionError) as raised:
        EmbeddedPostgres(locked / "postgres").start()
    message = str(raised.value)
    assert "'postgres'" in message
    assert "cannot enter" in message
    assert "chmod o+x" in message


def test_a_failing_initdb_is_reported_with_its_output(pg_dir: Path) -> None:
    bin_dir = _fake_binaries(
        pg_dir / "bin", initdb="echo 'initdb: error: disk on fire' >&2; exit 1", postgres="exit 1"
    )
    server = EmbeddedPostgres(pg_dir / "postgres", PostgresServerSettings(binary_dir=bin_dir))
    with pytest.raises(PostgresServerStartError, match="disk on fire"):
        server.start()


def test_an_unreachable_preferred_data_dir_moves_where_the_server_user_can_go(
    tmp_path: Path, pg_dir: Path
) -> None:
    if os.geteuid() != 0:
        assert reachable_data_dir(tmp_path / "pg") == tmp_path / "pg"
        return
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    chosen = reachable_data_dir(closed / "pg")
    assert chosen != closed / "pg" and chosen == reachable_data_dir(closed / "pg")  # stable per checkout
    assert chosen.parent.stat().st_mode & 0o001  # others may pass through
    assert reachable_data_dir(pg_dir / "pg") == pg_dir / "pg"
