"""What may name a backtest run, and the names a run's id gives its other parts.

A run id becomes part of Redis keys, topic names and a PostgreSQL schema
name, and arrives from the command line and in API paths: one rule for all.
"""

from __future__ import annotations

import re

__all__ = ["RUN_ID_RULE", "forensics_schema", "is_run_id"]

RUN_ID_RULE = "1 to 64 letters, digits, '-' or '_', beginning with a letter or digit"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def is_run_id(text: str) -> bool:
    return _RUN_ID.fullmatch(text) is not None


def forensics_schema(run_id: str) -> str:
    """The database schema a run's decisions are explained into (``glassbox backtest --forensics``)."""
    return f"backtest_{run_id.replace('-', '_').lower()}"
