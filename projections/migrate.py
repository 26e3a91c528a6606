"""Versioned schema migrations for the projections' PostgreSQL schema.

Migrations are the SQL files in ``projections/migrations``, applied in
version order, each in its own transaction, and recorded in
``<schema>.schema_migrations`` with a checksum of the file, so a file edited
after it was applied is refused rather than silently diverging.

Everything lives in one named schema (production uses ``glassbox``; tests and
backtests each use their own). Files never name it: they write ``{schema}``
(and ``{schema_name}`` where a string literal is needed), filled in here with
:mod:`psycopg.sql` so any schema name is quoted correctly. Literal braces in
a file are written ``{{`` and ``}}``.

Storage mode: the time-keyed tables are TimescaleDB hypertables when the
extension can be used, and native daily range partitions otherwise. The
choice is made here, once per schema, and recorded in
``<schema>.storage_mode``; a migration whose DDL depends on it comes as two
files, ``NNNN_name.native.sql`` and ``NNNN_name.timescaledb.sql``, and only
the one for the schema's mode runs. Code reading the tables does not care.
"""

from __future__ import annotations

import hashlib
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from glassbox import GlassboxError, Settings, redact_url
from projections.partitions import ensure_partitions, lock_schema

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from importlib.resources.abc import Traversable

__all__ = [
    "Migration",
    "MigrationChecksumMismatch",
    "MigrationError",
    "MigrationSettings",
    "StorageMode",
    "apply_migrations",
    "detect_storage_mode",
    "load_migrations",
    "storage_mode",
]

StorageMode = Literal["native", "timescaledb"]
_STORAGE_MODES: tuple[StorageMode, ...] = ("native", "timescaledb")
_ANY_MODE = "any"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(native|timescaledb))?\.sql$")
_EXTENSION_LOCK = "glassbox:create-extension"
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL silently truncates longer names

# The migration machinery's own tables, created before any migration runs.
_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.storage_mode (
    mode      text        NOT NULL CHECK (mode IN ('native', 'timescaledb')),
    chosen_at timestamptz NOT NULL DEFAULT now(),
    one_row   boolean     PRIMARY KEY DEFAULT true CHECK (one_row)
);
"""

_log = logging.getLogger(__name__)


class MigrationError(GlassboxError):
    """The schema could not be migrated; the message names the migration and what to do."""


class MigrationChecksumMismatch(MigrationError):
    """An applied migration's file changed afterwards."""


@dataclass(frozen=True)
class MigrationSettings:
    """How :func:`apply_migrations` sets the schema up.

    ``storage_mode`` ``"auto"`` picks TimescaleDB when the server can load it,
    else native partitions; a schema keeps the mode it was created with.
    The retention and compression intervals apply in TimescaleDB mode only
    (native partitions are dropped by hand); ``partition_days_ahead`` in
    native mode only. ``migrations_dir`` replaces the bundled migrations.
    """

    storage_mode: Literal["auto", "native", "timescaledb"] = "auto"
    archive_retention: timedelta = timedelta(days=5 * 365 + 1)  # five years
    read_model_retention: timedelta = timedelta(days=5 * 365 + 1)
    compress_after: timedelta = timedelta(days=7)
    partition_days_ahead: int = 7
    migrations_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.storage_mode not in ("auto", *_STORAGE_MODES):
            msg = f"storage_mode must be auto, native or timescaledb, not {self.storage_mode!r}"
            raise ValueError(msg)
        for name in ("archive_retention", "read_model_retention", "compress_after"):
            if getattr(self, name) <= timedelta(0):
                msg = f"{name} must be a positive interval, not {getattr(self, name)!r}"
                raise ValueError(msg)
        if self.partition_days_ahead < 0:
            msg = f"partition_days_ahead must not be negative, not {self.partition_days_ahead!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class Migration:
    """One schema version: its SQL for any storage mode, or one text per mode."""

    version: int
    name: str
    sql_by_mode: Mapping[str, str] = field(repr=False)

    @property
    def label(self) -> str:
        """``0002_time_series``: how the migration is named in results and errors."""
        return f"{self.version:04d}_{self.name}"

    def sql_for(self, mode: StorageMode) -> str:
        """The SQL text to run for a schema in ``mode`` (placeholders not filled in)."""
        return self.sql_by_mode.get(_ANY_MODE) or self.sql_by_mode[mode]

    def checksum_for(self, mode: StorageMode) -> str:
        """SHA-256 of :meth:`sql_for`, as recorded in ``schema_migrations``."""
        return hashlib.sha256(self.sql_for(mode).encode()).hexdigest()

    def render(
        self, mode: StorageMode, schema: str, settings: MigrationSettings | None = None
    ) -> sql.Composed:
        """The SQL for ``mode`` with its placeholders filled in for ``schema``.

        Raises MigrationError when the file has a placeholder we do not fill.
        """
        settings = settings or MigrationSettings()
        return _render(self.sql_for(mode), schema, settings, f"migration {self.label}")


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the bundled ones), in version order.

    Raises:
        MigrationError: a ``.sql`` file is misnamed, a version is used twice,
            or a mode-specific migration lacks its other variant.
    """
    folder: Traversable = directory if directory is not None else _bundled()
    texts: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            msg = (
                f"migration file {entry.name!r} must be named NNNN_name.sql or "
                "NNNN_name.native.sql / NNNN_name.timescaledb.sql"
            )
            raise MigrationError(msg)
        version, name, mode = int(match[1]), match[2], match[3] or _ANY_MODE
        if names.setdefault(version, name) != name or mode in texts.get(version, {}):
            msg = f"migration version {version:04d} is used by more than one file in {folder}"
            raise MigrationError(msg)
        texts.setdefault(version, {})[mode] = entry.read_text(encoding="utf-8")
    migrations = [Migration(v, names[v], MappingProxyType(texts[v])) for v in sorted(texts)]
    for migration in migrations:
        modes = set(migration.sql_by_mode)
        if modes != {_ANY_MODE} and modes != set(_STORAGE_MODES):
            msg = (
                f"migration {migration.label} must be one .sql file or both a .native.sql "
                f"and a .timescaledb.sql file, not {sorted(modes)}"
            )
            raise MigrationError(msg)
    return migrations


def apply_migrations(
    conn_or_url: psycopg.Connection[Any] | str,
    schema: str = "glassbox",
    settings: MigrationSettings | None = None,
) -> list[str]:
    """Apply every migration ``schema`` lacks, in version order; return their labels.

    Creates the schema when missing. Each migration runs in its own
    transaction under an advisory lock, so concurrent callers (workers
    starting together) apply each migration once. Running again applies
    nothing and returns ``[]``. In native storage mode, also creates the daily
    partitions from yesterday to ``settings.partition_days_ahead`` days ahead.
    A connection passed in must not be inside a transaction; a URL is
    connected to and closed again.

    Raises:
        ValueError: the schema name is empty or longer than 63 bytes.
        MigrationChecksumMismatch: an applied migration's file has changed.
        MigrationError: cannot connect, a migration failed (it was rolled
            back), the schema is newer than these migrations, or the storage
            mode asked for cannot be used.
        PartitionError: the daily partitions could not be created.
    """
    settings = settings or MigrationSettings()
    _check_schema_name(schema)
    migrations = load_migrations(settings.migrations_dir)
    with _connection(conn_or_url) as conn:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            msg = (
                "apply_migrations needs a connection outside any transaction "
                "(it commits each migration itself): commit or roll back first"
            )
            raise MigrationError(msg)
        try:
            mode = _prepare(conn, schema, settings, migrations)
            applied = [m.label for m in migrations if _apply(conn, schema, settings, m, mode)]
        except psycopg.Error as error:
            msg = f"could not migrate schema {schema!r}: {error}"
            raise MigrationError(msg) from error
        if mode == "native":
            yesterday = datetime.now(UTC).date() - timedelta(days=1)
            ensure_partitions(conn, schema, yesterday, settings.partition_days_ahead + 2)
    return applied


def storage_mode(conn: psycopg.Connection[Any], schema: str) -> StorageMode | None:
    """The storage mode recorded for ``schema``, or None before it was migrated."""
    with conn.cursor(row_factory=tuple_row) as cursor:
        found = cursor.execute(
            "SELECT to_regclass(format('%%I.storage_mode', %s::text)) IS NOT NULL", (schema,)
        ).fetchone()
        if not (found and found[0]):
            return None
        row = cursor.execute(
            sql.SQL("SELECT mode FROM {}.storage_mode").format(sql.Identifier(schema))
        ).fetchone()
    return row[0] if row else None


def detect_storage_mode(conn: psycopg.Connection[Any]) -> StorageMode:
    """``"timescaledb"`` when the server can use the extension, else ``"native"``.

    The extension must be installed in the database already, or be available
    and preloaded (``shared_preload_libraries``): merely available is not
    enough, as CREATE EXTENSION then fails.
    """
    with conn.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
            " EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
        ).fetchone()
    installed, available = row if row else (False, False)
    if installed or (available and _preloaded(conn, "timescaledb")):
        return "timescaledb"
    return "native"


def _bundled() -> Traversable:
    return resources.files("projections").joinpath("migrations")


def _check_schema_name(schema: str) -> None:
    if not schema or "\x00" in schema or len(schema.encode()) > _MAX_IDENTIFIER_BYTES:
        msg = f"schema must be a PostgreSQL name of 1 to 63 bytes, not {schema!r}"
        raise ValueError(msg)


@contextmanager
def _connection(
    conn_or_url: psycopg.Connection[Any] | str,
) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(conn_or_url, psycopg.Connection):
        yield conn_or_url
        return
    try:
        conn = psycopg.connect(conn_or_url, autocommit=True)
    except psycopg.Error as error:
        msg = f"cannot connect to {redact_url(conn_or_url)} to migrate: {error}"
        raise MigrationError(msg) from error
    with conn:
        yield conn


def _prepare(
    conn: psycopg.Connection[Any],
    schema: str,
    settings: MigrationSettings,
    migrations: Sequence[Migration],
) -> StorageMode:
    """Create the bookkeeping tables, settle the storage mode, check applied files."""
    with conn.transaction():
        lock_schema(conn, schema)
        conn.execute(_render(_BOOKKEEPING, schema, settings, "the bookkeeping tables"))
        mode = _settle_storage_mode(conn, schema, settings)
        _verify_applied(conn, schema, migrations, mode)
    return mode


def _settle_storage_mode(
    conn: psycopg.Connection[Any], schema: str, settings: MigrationSettings
) -> StorageMode:
    recorded = storage_mode(conn, schema)
    wanted = settings.storage_mode
    if recorded is not None:
        if wanted not in ("auto", recorded):
            msg = (
                f"schema {schema!r} stores its time series in {recorded} mode and cannot "
                f"switch to {wanted}: use storage_mode={recorded!r} or 'auto', or migrate "
                "a new schema and copy the data over"
            )
            raise MigrationError(msg)
        mode: StorageMode = recorded
    else:
        detected = detect_storage_mode(conn)
        mode = detected if wanted == "auto" else wanted
        if mode == "timescaledb" and detected != "timescaledb":
            msg = (
                "storage_mode 'timescaledb' was asked for, but this server cannot load the "
                "timescaledb extension (it must be installed and in shared_preload_libraries): "
                "install TimescaleDB or use storage_mode 'native' or 'auto'"
            )
            raise MigrationError(msg)
        conn.execute(
            sql.SQL("INSERT INTO {}.storage_mode (mode) VALUES (%s)").format(
                sql.Identifier(schema)
            ),
            (mode,),
        )
        _log.info("schema %r stores its time series in %s mode", schema, mode)
    if mode == "timescaledb":
        # The extension is per database: schemas migrated at once must not race on it.
        lock_schema(conn, _EXTENSION_LOCK)
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return mode


def _verify_applied(
    conn: psycopg.Connection[Any],
    schema: str,
    migrations: Sequence[Migration],
    mode: StorageMode,
) -> None:
    known = {migration.version: migration for migration in migrations}
    query = sql.SQL("SELECT version, name, checksum FROM {}.schema_migrations ORDER BY version")
    with conn.cursor(row_factory=tuple_row) as cursor:
        rows = cursor.execute(query.format(sql.Identifier(schema))).fetchall()
    for version, name, checksum in rows:
        migration = known.get(version)
        if migration is None:
            msg = (
                f"schema {schema!r} has migration {version:04d}_{name} applied, which this "
                "code does not have: the schema is newer than this Glassbox, run a newer one"
            )
            raise MigrationError(msg)
        if migration.checksum_for(mode) != checksum:
            msg = (
                f"migration {migration.label} changed after it was applied to schema "
                f"{schema!r} (recorded checksum {checksum[:12]}, file now "
                f"{migration.checksum_for(mode)[:12]}): restore the file and put the "
                "change in a new migration"
            )
            raise MigrationChecksumMismatch(msg)


def _apply(
    conn: psycopg.Connection[Any],
    schema: str,
    settings: MigrationSettings,
    migration: Migration,
    mode: StorageMode,
) -> bool:
    """Apply ``migration`` unless already recorded; True when this call applied it."""
    record = sql.SQL(
        "INSERT INTO {}.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
    ).format(sql.Identifier(schema))
    with conn.transaction():
        lock_schema(conn, schema)
        # Checked again under the lock: a concurrent runner may have applied it.
        if _is_applied(conn, schema, migration.version):
            return False
        try:
            conn.execute(migration.render(mode, schema, settings))
        except psycopg.Error as error:
            msg = (
                f"migration {migration.label} ({mode}) failed in schema {schema!r} and "
                f"was rolled back: {error}"
            )
            raise MigrationError(msg) from error
        conn.execute(record, (migration.version, migration.name, migration.checksum_for(mode)))
    _log.info("applied migration %s to schema %r", migration.label, schema)
    return True


def _is_applied(conn: psycopg.Connection[Any], schema: str, version: int) -> bool:
    query = sql.SQL("SELECT 1 FROM {}.schema_migrations WHERE version = %s")
    with conn.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute(query.format(sql.Identifier(schema)), (version,)).fetchone()
    return row is not None


def _render(text: str, schema: str, settings: MigrationSettings, source: str) -> sql.Composed:
    """Fill a migration's placeholders; names and values are quoted by psycopg."""
    try:
        return sql.SQL(text).format(  # type: ignore[arg-type]  # files, not user input
            schema=sql.Identifier(schema),
            schema_name=sql.Literal(schema),
            archive_retention=sql.Literal(settings.archive_retention),
            read_model_retention=sql.Literal(settings.read_model_retention),
            compress_after=sql.Literal(settings.compress_after),
            chunk_interval=sql.Literal(timedelta(days=1)),
        )
    except (KeyError, IndexError, ValueError) as error:
        msg = (
            f"{source} has a placeholder that cannot be filled in ({error!r}): "
            "write literal braces as {{ and }}"
        )
        raise MigrationError(msg) from error


def _preloaded(conn: psycopg.Connection[Any], library: str) -> bool:
    # Reading shared_preload_libraries needs pg_read_all_settings; without it,
    # assume the library is not preloaded (a savepoint keeps the caller's
    # transaction usable after the refusal).
    try:
        with conn.transaction(), conn.cursor(row_factory=tuple_row) as cursor:
            row = cursor.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return False
    entries = (row[0] if row else "").split(",")
    return library in (entry.strip().strip('"') for entry in entries)


def main(argv: list[str] | None = None) -> int:
    """``python -m projections.migrate --schema S``: apply what the schema lacks (needs DATABASE_URL)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m projections.migrate", description=main.__doc__)
    parser.add_argument("--schema", default="glassbox")
    args = parser.parse_args(argv)
    try:
        url = Settings.from_env().database_url
        if not url:
            print("migrate: set DATABASE_URL to the PostgreSQL to migrate", file=sys.stderr)
            return 2
        applied = apply_migrations(url, args.schema)
    except (GlassboxError, psycopg.Error) as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 1
    print(f"schema {args.schema}: applied {', '.join(applied) if applied else 'nothing (up to date)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
