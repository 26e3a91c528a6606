"""Fixtures for the projections tests: a directory an embedded PostgreSQL may live in."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import reachable_tmp_dir

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A fresh directory an EmbeddedPostgres started by one test may live in."""
    with reachable_tmp_dir() as path:
        yield path
