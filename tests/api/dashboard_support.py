"""The API app the dashboard's browser tests serve, shared by the Chromium and the Firefox tests.

Both browsers are tested against the same app: the read models the pipeline
filled (``projected``) and the live stream of the test's own hot path, so a
difference between them is the browser's, not the set-up's.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from api.app import ApiConfig, create_app
from api.auth import ApiTokens
from api.stream_hub import StreamConfig
from edge.system_keys import SystemKeys

__all__ = ["dashboard_app"]


def dashboard_app(projected: Any, hot: Any, namespace: str, tokens: ApiTokens) -> Starlette:
    """The API over ``projected``'s read models, streaming ``hot``'s store, with its system keys under ``namespace``.

    The system messages come each 0.25 s (not each second) so that a test sees the overview's numbers move soon.
    """
    keys = SystemKeys(namespace)
    stream = StreamConfig(stores=(hot.settings.store_name,), book_key=keys.risk_book, trading_key=keys.trading_state,
                          system_interval_s=0.25)
    return create_app(ApiConfig(projected.database_url, tokens, schema=projected.schema,
                                redis_url=projected.redis_url, relay_stores=stream.stores, stream=stream,
                                backtests_store=keys.backtests_store))
