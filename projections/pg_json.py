"""JSON to and from PostgreSQL through orjson, per connection.

psycopg's default is the standard library's ``json``: several times slower
for the SHAP maps and envelopes the projections write, and it writes NaN,
which ``jsonb`` refuses (orjson writes null).
"""

from __future__ import annotations

from typing import Any

import orjson
from psycopg.abc import AdaptContext
from psycopg.types.json import set_json_dumps, set_json_loads

__all__ = ["use_orjson"]


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=str)


def use_orjson(context: AdaptContext) -> None:
    """Make ``context`` (a connection or cursor) dump and load JSON with orjson."""
    set_json_dumps(_dumps, context)
    set_json_loads(orjson.loads, context)
