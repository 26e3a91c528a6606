"""Fixtures for the projections tests: a real PostgreSQL and a schema per test."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

from tests.conftest import reachable_tmp_dir

if TYPE_CHECKING:
    from collections.abc import Iterator


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
