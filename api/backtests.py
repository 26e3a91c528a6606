"""``GET /api/v1/backtests``: the completed backtests, newest first, from the runs' event store in Redis.

Every ``glassbox backtest`` records one ``Backtest.Run.Completed`` event in
the system's backtests store (``SystemKeys.backtests_store``); this reads
that store's application log directly (one ``XREVRANGE``), as the live
stream reads the shards' logs, so the API needs no eventsourcing
application of its own. An entry it cannot read is skipped and counted in
the answer (``unreadable``), never a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from edge.run_names import forensics_schema
from edge.store_layout import StoreKeys

__all__ = ["MAX_REPORT_BYTES", "RUN_COMPLETED_TOPIC", "backtest_runs", "find_run", "read_report", "run_forensics_schema",
           "run_summary"]

MAX_REPORT_BYTES = 64 * 1024 * 1024
"""A report.json larger than this is not served (a run of many years of many symbols stays far below)."""

RUN_COMPLETED_TOPIC = "Backtest.Run.Completed"
_TOPIC = RUN_COMPLETED_TOPIC.encode()
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
            "report": bool((state.get("report") or {}).get("json")),
            "forensics": bool(state.get("forensics_schema")),
        }
    except (KeyError, TypeError, AttributeError):
        return None


async def backtest_runs(client: aioredis.Redis, store: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """(the newest ``limit`` runs, newest first; how many log entries could not be read)."""
    runs: list[dict[str, Any]] = []
    unreadable = 0
    async for state in _completions(client, store):
        summary = run_summary(state) if state is not None else None
        if summary is None:
            unreadable += 1
        else:
            runs.append(summary)
            if len(runs) == limit:
                break
    return runs, unreadable


async def find_run(client: aioredis.Redis, store: str, run_id: str) -> dict[str, Any] | None:
    """The stored state of run ``run_id``'s completion, or None when no such run was recorded."""
    async for state in _completions(client, store):
        if state is not None and state.get("run_id") == run_id:
            return state
    return None


async def _completions(client: aioredis.Redis, store: str) -> AsyncIterator[dict[str, Any] | None]:
    """The state of every run completion in the store's log, newest first (None for one that cannot be read)."""
    cursor = "+"
    while True:
        entries = await client.xrevrange(StoreKeys(store).log, max=cursor, min="-", count=200)
        if cursor != "+":
            entries = entries[1:]  # the entry the previous page ended on
        if not entries:
            return
        for _, fields in entries:
            if fields.get(b"t", b"") != _TOPIC:
                continue
            try:
                state = orjson.loads(fields.get(b"s", b""))
            except orjson.JSONDecodeError:
                state = None
            yield state if isinstance(state, dict) else None
        cursor = entries[-1][0]


def run_forensics_schema(state: dict[str, Any]) -> str | None:
    """The schema the run's decisions were explained into; None when it was not run with ``--forensics``.

    Only the name the run id gives is accepted, so a record can never point the API at another schema.
    """
    schema = state.get("forensics_schema")
    return schema if schema and schema == forensics_schema(str(state.get("run_id", ""))) else None


async def read_report(state: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the run's ``report.json``, None) or (None, why it cannot be served)."""
    recorded = (state.get("report") or {}).get("json")
    if not recorded:
        return None, "this run's record does not say where its report went (recorded before reports were linked)"
    path = Path(str(recorded))
    if path.name != "report.json":
        return None, f"the recorded report {shown_path(path)} is not a report.json"
    try:
        raw = await asyncio.to_thread(_read_bounded, path)
    except FileNotFoundError:
        return None, f"the report is no longer at {shown_path(path)} (moved or deleted)"
    except OSError as error:
        return None, f"the report at {shown_path(path)} cannot be read: {error.strerror or error}"
    if raw is None:
        return None, f"the report at {shown_path(path)} is over {MAX_REPORT_BYTES // 2**20} MiB"
    try:
        report = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, f"the report at {shown_path(path)} is not JSON"
    if not isinstance(report, dict) or "metrics" not in report:
        return None, f"the file at {shown_path(path)} is not a backtest report"
    return report, None


def shown_path(path: Path) -> str:
    return str(path)[:300]


def _read_bounded(path: Path) -> bytes | None:
    with path.open("rb") as file:
        raw = file.read(MAX_REPORT_BYTES + 1)
    return None if len(raw) > MAX_REPORT_BYTES else raw
