"""Fixtures for the projections tests: a real PostgreSQL and a schema per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

from projections.postgres_server import database_url_or_embedded

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def reachable_tmp_dir() -> Iterator[Path]:
    """A temporary directory the unprivileged server user can pass through.

    pytest's own tmp dirs live under a 0700 directory of root's, which the
    ``postgres`` user a root process runs the server as cannot enter.
    """
    path = Path(tempfile.mkdtemp(prefix="glassbox-pg-"))
    path.chmod(0o711)  # enter, not list
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """``DATABASE_URL`` when set, else an EmbeddedPostgres started for the whole session."""
    with reachable_tmp_dir() as root, database_url_or_embedded(
        os.environ.get("DATABASE_URL"), root / "postgres"
    ) as url:
        yield url


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A fresh directory an EmbeddedPostgres started by one test may live in."""
    with reachable_tmp_dir() as path:
        yield path


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A schema name no other test uses; the schema is dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to the test database, closed afterwards."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection
