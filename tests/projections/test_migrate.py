"""apply_migrations: versioned, checksummed, once per schema, safe to run concurrently."""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

import projections
from projections.migrate import (
    MigrationChecksumMismatch,
    MigrationError,
    MigrationSettings,
    StorageMode,
    apply_migrations,
    detect_storage_mode,
    load_migrations,
    storage_mode,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

BUNDLED = ["0001_foundation", "0002_time_series", "0003_dead_letters", "0004_archive_payload_json", "0005_no_statistics_on_documents",
           "0006_documents_json", "0007_dead_letter_replays"]
TABLES = [
    "schema_migrations", "storage_mode", "projection_tracking", "positions",
    "decision_index", "event_archive", "decisions", "forensics", "dead_letters",
]  # fmt: skip


def _copy_of_bundled(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(Path(projections.__file__).with_name("migrations"), folder)
    return folder


def _recorded(conn: psycopg.Connection, schema: str) -> list[tuple[int, str]]:
    query = sql.SQL("SELECT version, name FROM {}.schema_migrations ORDER BY version")
    return conn.execute(query.format(sql.Identifier(schema))).fetchall()


def _missing_tables(conn: psycopg.Connection, schema: str, names: Sequence[str]) -> list[str]:
    return [
        name
        for name in names
        if conn.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, name)
        ).fetchone()[0]
        is None
    ]


def test_bundled_migrations_are_versioned_in_order() -> None:
    assert [m.label for m in load_migrations()] == BUNDLED


@pytest.mark.parametrize("mode", ["native", "timescaledb"])
def test_every_bundled_migration_renders_in_both_modes(
    conn: psycopg.Connection, mode: StorageMode
) -> None:
    for migration in load_migrations():
        text = migration.render(mode, 'a "quoted" schema').as_string(conn)
        assert '"a ""quoted"" schema".' in text
        assert re.search(r"\{[a-z_]+\}", text) is None  # every placeholder filled in


def test_applies_every_migration_once(
    database_url: str, conn: psycopg.Connection, schema: str
) -> None:
    assert apply_migrations(database_url, schema) == BUNDLED
    assert _recorded(conn, schema) == [(1, "foundation"), (2, "time_series"), (3, "dead_letters"), (4, "archive_payload_json"), (5, "no_statistics_on_documents"), (6, "documents_json"), (7, "dead_letter_replays")]
    assert _missing_tables(conn, schema, TABLES) == []
    assert storage_mode(conn, schema) == detect_storage_mode(conn)  # native here
    # 0004: the native archive keeps payloads as json text (validated, not parsed into jsonb), partitions too.
    assert set(conn.execute(
        "SELECT DISTINCT a.atttypid::regtype::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname LIKE 'event_archive%%'"
        " AND a.attname = 'payload'", (schema,)).fetchall()) == {("json",)}
    # 0006: so do the decisions' and forensics' documents, in the parents and every partition.
    for table, columns in {"decisions": ["regime_probs", "strategy_weights", "features", "risk_checks", "fill"],
                           "forensics": ["shap_values", "top_features", "risk_checks", "fill"]}.items():
        types = conn.execute(
            "SELECT c.relname, a.attname, a.atttypid::regtype::text FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname ~ %s AND a.attname = ANY(%s)",
            (schema, f"^{table}(_p[0-9]{{8}}|_default)?$", columns)).fetchall()
        assert len({relname for relname, _, _ in types}) > 3 and {t for _, _, t in types} == {"json"}, table
    # 0005: no planner statistics for the JSON documents, in the parents and every partition (those
    # ensure_partitions created after the migrations included): autovacuum analyzes the partitions.
    documents = {"decisions": ["regime_probs", "strategy_weights", "features", "risk_checks", "fill"],
                 "forensics": ["shap_values", "top_features", "risk_checks", "fill"], "event_archive": ["payload"]}
    for table, columns in documents.items():
        targets = conn.execute(
            "SELECT c.relname, a.attname, a.attstattarget FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p')"
            " AND c.relname ~ %s AND a.attname = ANY(%s)", (schema, f"^{table}(_p[0-9]{{8}}|_default)?$", columns)
        ).fetchall()
        assert len({relname for relname, _, _ in targets}) > 3  # the parent, the default and the daily partitions
        assert {(name, target) for _, name, target in targets} == {(name, 0) for name in columns}

    assert apply_migrations(database_url, schema) == []  # by URL ...
    assert apply_migrations(conn, schema) == []  # ... or on a connection
    assert _recorded(conn, schema) == [(1, "foundation"), (2, "time_series"), (3, "dead_letters"), (4, "archive_payload_json"), (5, "no_statistics_on_documents"), (6, "documents_json"), (7, "dead_letter_replays")]


def test_a_new_migration_is_applied_alone(
    tmp_path: Path, database_url: str, conn: psycopg.Connection, schema: str
) -> None:
    folder = _copy_of_bundled(tmp_path)
    settings = MigrationSettings(migrations_dir=folder)
    apply_migrations(database_url, schema, settings)
    (folder / "0008_notes.sql").write_text("CREATE TABLE {schema}.notes (body text);\n")
    assert apply_migrations(database_url, schema, settings) == ["0008_notes"]
    assert _missing_tables(conn, schema, ["notes"]) == []


def test_a_failing_migration_is_rolled_back_and_named(
    tmp_path: Path, database_url: str, conn: psycopg.Connection, schema: str
) -> None:
    folder = _copy_of_bundled(tmp_path)
    (folder / "0008_broken.sql").write_text(
        "CREATE TABLE {schema}.half_done (a int);\nSELECT no_such_function();\n"
    )
    settings = MigrationSettings(migrations_dir=folder)
    with pytest.raises(MigrationError, match="migration 0008_broken .* rolled back") as raised:
        apply_migrations(database_url, schema, settings)
    assert "no_such_function" in str(raised.value)
    assert _recorded(conn, schema) == [(1, "foundation"), (2, "time_series"), (3, "dead_letters"), (4, "archive_payload_json"), (5, "no_statistics_on_documents"), (6, "documents_json"), (7, "dead_letter_replays")]
    assert _missing_tables(conn, schema, ["half_done"]) == ["half_done"]


def test_a_migration_changed_after_it_was_applied_is_refused(
    tmp_path: Path, database_url: str, conn: psycopg.Connection, schema: str
) -> None:
    folder = _copy_of_bundled(tmp_path)
    settings = MigrationSettings(migrations_dir=folder)
    apply_migrations(database_url, schema, settings)
    with (folder / "0001_foundation.sql").open("a") as changed:
        changed.write("CREATE TABLE {schema}.sneaked_in (a int);\n")
    (folder / "0008_notes.sql").write_text("CREATE TABLE {schema}.notes (body text);\n")

    with pytest.raises(MigrationChecksumMismatch) as raised:
        apply_migrations(database_url, schema, settings)
    assert str(raised.value).startswith(
        f"migration 0001_foundation changed after it was applied to schema {schema!r}"
    )
    assert "put the change in a new migration" in str(raised.value)
    # Nothing else ran: the refusal comes before any new migration.
    assert _missing_tables(conn, schema, ["notes"]) == ["notes"]


def test_a_schema_newer_than_the_code_is_refused(
    tmp_path: Path, database_url: str, schema: str
) -> None:
    apply_migrations(database_url, schema)
    older = tmp_path / "older"
    older.mkdir()
    shutil.copy(_copy_of_bundled(tmp_path) / "0001_foundation.sql", older)
    with pytest.raises(MigrationError, match="0002_time_series applied, which this code"):
        apply_migrations(database_url, schema, MigrationSettings(migrations_dir=older))


def test_concurrent_appliers_apply_each_migration_once(
    database_url: str, conn: psycopg.Connection, schema: str
) -> None:
    runners = 4
    start = threading.Barrier(runners)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as own:
                start.wait()
                results.append(apply_migrations(own, schema))
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(label for applied in results for label in applied) == BUNDLED
    assert _recorded(conn, schema) == [(1, "foundation"), (2, "time_series"), (3, "dead_letters"), (4, "archive_payload_json"), (5, "no_statistics_on_documents"), (6, "documents_json"), (7, "dead_letter_replays")]


def test_any_schema_name_is_quoted(database_url: str, conn: psycopg.Connection) -> None:
    schema = f'Odd "name"; DROP TABLE x; {uuid.uuid4().hex[:8]}'
    try:
        assert apply_migrations(database_url, schema) == BUNDLED
        assert _missing_tables(conn, schema, TABLES) == []
    finally:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_timescaledb_is_used_only_where_the_server_has_it(
    database_url: str, conn: psycopg.Connection, schema: str
) -> None:
    if detect_storage_mode(conn) == "timescaledb":  # a DATABASE_URL pointing at TimescaleDB
        apply_migrations(database_url, schema, MigrationSettings(storage_mode="timescaledb"))
        assert storage_mode(conn, schema) == "timescaledb"
        return
    with pytest.raises(MigrationError, match="cannot load the timescaledb extension"):
        apply_migrations(database_url, schema, MigrationSettings(storage_mode="timescaledb"))
    assert storage_mode(conn, schema) is None  # nothing was recorded


def test_a_schema_keeps_its_storage_mode(database_url: str, schema: str) -> None:
    apply_migrations(database_url, schema, MigrationSettings(storage_mode="native"))
    with pytest.raises(MigrationError, match="in native mode and cannot switch"):
        apply_migrations(database_url, schema, MigrationSettings(storage_mode="timescaledb"))


def test_a_connection_inside_a_transaction_is_refused(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT 1")  # opens a transaction (autocommit is off)
        with pytest.raises(MigrationError, match="outside any transaction"):
            apply_migrations(conn, schema)


@pytest.mark.parametrize(
    ("files", "complaint"),
    [
        (["1_short.sql"], "must be named NNNN_name.sql"),
        (["0001_a.sql", "0001_b.sql"], "version 0001 is used by more than one file"),
        (["0001_a.native.sql"], "both a .native.sql and a .timescaledb.sql"),
    ],
)
def test_misnamed_migration_files_are_refused(
    tmp_path: Path, files: list[str], complaint: str
) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=complaint):
        load_migrations(tmp_path)
