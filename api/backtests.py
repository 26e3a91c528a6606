"""``GET /api/v1/backtests``: the completed backtests, newest first, from the runs' event store in Redis.

Every ``glassbox backtest`` records one ``Backtest.Run.Completed`` event in
the system's backtests store (``SystemKeys.backtests_store``); this reads
that store's application log directly (one ``XREVRANGE``), as the live
stream reads the shards' logs, so the API needs no eventsourcing
application of its own. An entry it cannot read is skipped and counted in
the answer (``unreadable``), never a 500.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from edge.store_layout import StoreKeys

__all__ = ["RUN_COMPLETED_TOPIC", "backtest_runs", "run_summary"]

RUN_COMPLETED_TOPIC = "Backtest.Run.Completed"
_METRICS = ("total_return", "annualised_return", "sharpe_ratio", "max_drawdown", "win_rate", "trades", "exposure")


def run_summary(state: dict[str, Any]) -> dict[str, Any] | None:
    """One run as the API shows it; None when the event's state is not a run's."""
    try:
        parameters, data, metrics = state["parameters"], state["data_range"], state["metrics"]
        return {
            "run_id": str(state["run_id"]),
            "strategy": str(parameters["strategy"]["name"]),
            "source": str(parameters.get("source", "")),
            "first": data.get("first"), "last": data.get("last"),
            "symbols": list(data.get("symbols", [])), "ticks": data.get("ticks"),
            "model_version": str(state.get("model_version", "")),
            "metrics": {name: metrics.get(name) for name in _METRICS},
            # Runs recorded before these were kept have none: null, not 0.
            "orders_cut_by_risk": data.get("orders_cut_by_risk"),
            "orders_refused_by_risk": data.get("orders_refused_by_risk"),
            "events_per_s": (state.get("throughput") or {}).get("events_per_s"),
        }
    except (KeyError, TypeError, AttributeError):
        return None


async def backtest_runs(client: aioredis.Redis, store: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """(the newest ``limit`` runs, newest first; how many log entries could not be read)."""
    runs: list[dict[str, Any]] = []
    unreadable = 0
    cursor = "+"
    while len(runs) < limit:
        entries = await client.xrevrange(StoreKeys(store).log, max=cursor, min="-", count=200)
        if cursor != "+":
            entries = entries[1:]  # the entry the previous page ended on
        if not entries:
            break
        for _, fields in entries:
            if fields.get(b"t", b"").decode(errors="replace") != RUN_COMPLETED_TOPIC:
                continue
            try:
                summary = run_summary(orjson.loads(fields.get(b"s", b"")))
            except orjson.JSONDecodeError:
                summary = None
            if summary is None:
                unreadable += 1
            elif len(runs) < limit:
                runs.append(summary)
        cursor = entries[-1][0]
    return runs, unreadable
