"""Backbone throughput and forensics lag, each beside its own floor in the same run.

    python -m perf.forensics --symbols 50 --ticks 1000 --json out.json

1. Fills an event store with decisions (the real hot path on synthetic ticks).
2. ``relay_throughput_per_s``: the relay moves the whole log to the broker;
   ``relay_cpu_us_per_event`` the relay's CPU for it (this process's, read
   thread and event loop; Redis and the broker are processes of their own).
3. ``shap_raw_rows_per_s``: ``shap.TreeExplainer`` alone on the deployed
   model's three specialists (the floor of the forensics projection).
4. ``forensics_rows_per_s_per_worker``: one forensics worker from the first
   message to the last row (Kafka fetch, SHAP, PostgreSQL transaction).
5. ``archive_throughput_per_s``: one archive worker over all topics.
6. ``forensics_lag_ms_p50/p99``: ticks offered live at ``--live-rate`` while
   the relay and a forensics worker run as their own processes; lag is the
   forensics row's ``computed_at`` minus the decision's tick time, over the
   decisions after the first tenth of the window (processes warmed up).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from actors.features import FeatureEngine
from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from aggregates.policy import DecisionPolicy
from backbone.broker import run_coroutine
from backbone.relay import Relay, RelaySettings
from backbone.relay_main import registry_feature_names
from edge.feeds import SyntheticFeed
from edge.gc_settling import settle_garbage_collector
from perf.hotpath import _run_producer
from perf.report import write_result
from perf.services import Services, backbone_processes, fill_store, running_services
from projections.forensics import ExplainerCache
from projections.forensics_projection import ForensicsProjection
from projections.read_models import ArchiveProjection
from projections.worker import Projection, ProjectionWorker, WorkerSettings


def relay_all(services: Services, store: str, name: str = "relay") -> float:
    """Seconds the relay takes to move the whole log (:data:`RELAY_CPU_S` its CPU seconds, this process's)."""
    relay = Relay(services.redis_url, store, services.kafka_servers, services.topics,
                  registry_feature_names(services.registry), RelaySettings(name=name))

    async def drive() -> None:
        try:
            while await relay.step() or relay.metrics.lag:
                pass
        finally:
            await relay.close()

    settle_garbage_collector()  # as relay_main does
    started, cpu = time.perf_counter(), time.process_time()
    run_coroutine(drive())
    RELAY_CPU_S[0] = time.process_time() - cpu
    return time.perf_counter() - started


RELAY_CPU_S = [0.0]
"""CPU seconds of the last :func:`relay_all` (its read thread and event loop: the relay's own process)."""


def shap_raw_rows_per_s(services: Services, rows: int) -> float:
    """TreeExplainer alone on real feature vectors, all three specialists."""
    engine, vectors = FeatureEngine(), []
    for tick in SyntheticFeed(["RAW"], seed=3).ticks(rows + 50):
        vectors.append(engine.update(tick.price, tick.size, math.nan, math.nan))
    X = np.asarray(vectors[50:], dtype=np.float64)
    explainers = ExplainerCache(services.registry).get(services.registry.latest() or "")
    started = time.perf_counter()
    for explainer in explainers.explainers:
        explainer.shap_values(X)
    return len(X) / (time.perf_counter() - started)


def count(services: Services, table: str) -> int:
    with psycopg.connect(services.database_url) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(services.schema, table))).fetchone()[0]


def drain(services: Services, projection: Projection, table: str, rows: int) -> float:
    """Seconds one worker takes from its first message until ``table`` holds ``rows`` rows."""
    worker = ProjectionWorker(projection, services.kafka_servers, services.database_url, services.schema,
                              services.topics, WorkerSettings(max_records=5_000))
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(services.schema, table))

    async def drive() -> float:
        await worker.start()
        try:
            async with await psycopg.AsyncConnection.connect(services.database_url, autocommit=True) as conn:
                while not await worker.step():
                    pass  # the group join; timing starts with the first batch
                started = time.perf_counter()
                while (await (await conn.execute(query)).fetchone())[0] < rows:
                    await worker.step()
                return time.perf_counter() - started
        finally:
            await worker.stop()

    return run_coroutine(drive())


def live_lag_ms(services: Services, symbols: int, rate: float, seconds: float) -> tuple[float, float, float]:
    """Decision→forensics-row lag p50/p99 (ms) while ticks are offered at ``rate``; and the decisions/s."""
    names = SyntheticFeed.symbol_names(symbols)
    policy = DecisionPolicy(services.registry.load(services.registry.latest() or ""))
    hot = HotPath(HotPathSettings(services.redis_url, namespace=f"{services.namespace}live:", shard=ShardSettings()),
                  names, policy)
    window: dict[str, datetime] = {}
    with hot, backbone_processes(services, hot.settings.store_name, services.topics.prefix + "live."):
        time.sleep(3.0)  # the worker joins its group
        _run_producer(services.redis_url, hot.keys.prefix, names, rate, seconds,
                      on_start=lambda: window.setdefault("from", datetime.now(timezone.utc)),
                      on_finish=lambda: window.setdefault("to", datetime.now(timezone.utc)))
        deadline = time.monotonic() + 60
        decided = hot.stats.snapshot().decisions
        while _forensics_between(services, window) < decided * 0.999 and time.monotonic() < deadline:
            time.sleep(0.2)
    steady = window["from"] + (window["to"] - window["from"]) * 0.1  # after the first tenth: processes warm
    with psycopg.connect(services.database_url) as conn:
        p50, p99, n = conn.execute(sql.SQL(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP (ORDER BY lag),"
            " count(*) FROM (SELECT extract(epoch FROM computed_at - decided_at) * 1000 AS lag FROM {}"
            " WHERE decided_at >= %s AND decided_at < %s) AS lags"
        ).format(sql.Identifier(services.schema, "forensics")), (steady, window["to"])).fetchone()
    if not n:
        raise RuntimeError("no forensics rows for the live window: see the relay and worker output above")
    return float(p50), float(p99), n / (seconds * 0.9)


def _forensics_between(services: Services, window: dict[str, datetime]) -> int:
    with psycopg.connect(services.database_url) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE decided_at >= %s").format(
            sql.Identifier(services.schema, "forensics")), (window["from"],)).fetchone()[0]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.forensics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=1_000, help="ticks per symbol in the preloaded store")
    parser.add_argument("--live-rate", type=float, default=1_000.0, help="ticks/s offered for the lag measurement")
    parser.add_argument("--live-seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started_at = datetime.now(timezone.utc)
    with running_services() as services:
        print("filling the event store ...", file=sys.stderr, flush=True)
        store, events = fill_store(services, args.symbols, args.ticks)
        decisions = args.symbols * args.ticks
        print(f"relaying {events:,} events ...", file=sys.stderr, flush=True)
        relay_s = relay_all(services, store)
        print("SHAP alone ...", file=sys.stderr, flush=True)
        raw = shap_raw_rows_per_s(services, 20_000)
        print("forensics worker ...", file=sys.stderr, flush=True)
        forensics_s = drain(services, ForensicsProjection(ExplainerCache(services.registry)), "forensics", decisions)
        print("archive worker ...", file=sys.stderr, flush=True)
        archive_s = drain(services, ArchiveProjection(), "event_archive", events)
        print(f"live pipeline at {args.live_rate:g} ticks/s ...", file=sys.stderr, flush=True)
        lag50, lag99, live_rate = live_lag_ms(services, 10, args.live_rate, args.live_seconds)
    metrics = {
        "relay_throughput_per_s": events / relay_s,
        "relay_cpu_us_per_event": RELAY_CPU_S[0] / events * 1e6,
        "shap_raw_rows_per_s": raw,
        "forensics_rows_per_s_per_worker": decisions / forensics_s,
        "forensics_vs_raw_ratio": decisions / forensics_s / raw,
        "archive_throughput_per_s": events / archive_s,
        "forensics_lag_ms_p50": lag50,
        "forensics_lag_ms_p99": lag99,
        "live_decisions_per_s": live_rate,
        "events": float(events),
        "decisions": float(decisions),
    }
    params = {"symbols": args.symbols, "ticks": args.ticks, "live_rate": args.live_rate, "live_seconds": args.live_seconds}
    return write_result(args.json, "forensics", params, metrics, started_at)


if __name__ == "__main__":
    main()
