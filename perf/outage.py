"""Tick latency with and without a broker outage, in one run; and nothing lost.

    python -m perf.outage --rate 1000 --seconds 30 --outage 10 --json out.json

Two kinds of phase, each on fresh streams, store and topics, with the relay
and a forensics worker running as their own processes (as in production),
``--repeat`` pairs interleaved so drift of the shared machine hits both:

1. baseline: ticks offered at ``--rate`` for ``--seconds``;
2. outage: the same, with the embedded broker paused (SIGSTOP) for
   ``--outage`` seconds starting a third of the way in.

Metrics: tick→committed latency p50/p99 of each kind, latencies pooled over
its runs, and ``outage_ratio_p99`` (target ≤ 1.2: the hot path never waits on
the backbone); the outage runs' p99 before, during and after the pause (where
a tail comes from); ``*_p99_spread``, how far apart runs of one kind land;
the relay's circuit openings; and, once the broker is back, forensics rows
against decisions (``forensics_missing``, ``forensics_duplicates``: 0 when
nothing was lost).

The broker is paused, not killed: the embedded broker keeps its data in
memory, so a killed one comes back empty and the relay must re-publish
(``--from-position``); a pause is the outage it survives on its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psycopg
import redis
from psycopg import sql

from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from actors.stats import percentiles_us
from actors.system.layout import BACKBONE_NICENESS
from aggregates.policy import DecisionPolicy
from backbone.broker import BrokerSettings, EmbeddedBroker
from backbone.relay import RelayPosition
from edge.feeds import SyntheticFeed
from perf.hotpath import run_hot_path
from perf.report import write_result
from perf.services import Services, backbone_processes, running_services


def phase(services: Services, name: str, symbols: int, rate: float, seconds: float,
          pause: tuple[int, float, float] | None) -> dict[str, float]:
    """One run; ``pause`` = (broker pid, seconds in, seconds long) pauses the broker meanwhile."""
    names = SyntheticFeed.symbol_names(symbols)
    policy = DecisionPolicy(services.registry.load(services.registry.latest() or ""))
    hot = HotPath(HotPathSettings(services.redis_url, namespace=f"{services.namespace}{name}:", shard=ShardSettings()),
                  names, policy)
    prefix = f"{services.topics.prefix}{name}."
    before = _forensics_counts(services)
    with hot, backbone_processes(services, hot.settings.store_name, prefix):
        time.sleep(3.0)  # the worker joins its group
        timer = None
        marks = {"start": hot.stats.sample_batches()}
        if pause is not None:
            pid, after, length = pause
            timer = threading.Timer(after, _pause_broker, (pid, length, hot, marks))
            timer.start()
        latencies, achieved = run_hot_path(hot, rate, seconds)
        if timer is not None:
            timer.join()
        windows = {}
        if pause is not None:  # where the tail comes from: before, during, after the pause
            for window, (a, b) in {"before": ("start", "paused"), "during": ("paused", "resumed"),
                                   "after": ("resumed", None)}.items():
                windows[window] = hot.stats.latencies_ns(marks[a], marks[b] if b else None)
        decisions = hot.stats.snapshot().decisions
        rows, distinct = _wait_for_forensics(services, decisions + before[1])
        rows, distinct = rows - before[0], distinct - before[1]
        opened = _circuit_opened(services.redis_url, hot.settings.store_name)
    return {"latencies": latencies, "achieved": achieved, "decisions": decisions,
            "missing": decisions - distinct, "duplicates": rows - distinct, "opened": opened, "windows": windows}


def _pause_broker(pid: int, seconds: float, hot: HotPath, marks: dict[str, int]) -> None:
    print(f"  broker paused for {seconds:g} s", file=sys.stderr, flush=True)
    marks["paused"] = hot.stats.sample_batches()
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
        marks["resumed"] = hot.stats.sample_batches()
    print("  broker resumed", file=sys.stderr, flush=True)


def _forensics_counts(services: Services) -> tuple[int, int]:
    """(rows, distinct decisions) in the forensics table."""
    query = sql.SQL("SELECT count(*), count(DISTINCT decision_id) FROM {}").format(
        sql.Identifier(services.schema, "forensics"))
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        return conn.execute(query).fetchone()


def _wait_for_forensics(services: Services, decisions: int, timeout: float = 180.0) -> tuple[int, int]:
    """Forensics counts once ``decisions`` distinct decisions have a row (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        rows, distinct = _forensics_counts(services)
        if distinct >= decisions or time.monotonic() > deadline:
            time.sleep(1.0)  # a duplicate would arrive with the last batch
            return _forensics_counts(services)
        time.sleep(0.25)


def _circuit_opened(redis_url: str, store: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        value = client.hget(RelayPosition(client, store, "relay").metrics_key, "circuit_opened_total")
        return int(value or 0)
    finally:
        client.close()


def _spread(runs: list[dict]) -> float:
    """Largest over smallest p99 among runs of one kind: how far apart equal conditions land."""
    p99s = [percentiles_us(run["latencies"], (99,))[0] for run in runs]
    return max(p99s) / min(p99s)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.outage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1_000.0, help="ticks/s offered")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the broker is paused")
    parser.add_argument("--repeat", type=int, default=2,
                        help="baseline/outage pairs, interleaved; latencies are pooled per kind "
                             "(one pair's phases differ by up to 60 %% in p99 on this shared machine)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.outage >= args.seconds * 2 / 3:
        parser.error("--outage must end before the ticks do: keep it under two thirds of --seconds")
    started_at = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="glassbox-outage-") as tmp, \
            EmbeddedBroker(Path(tmp), BrokerSettings(niceness=BACKBONE_NICENESS)) as broker:
        with running_services(kafka_servers=broker.bootstrap_servers) as services:
            runs: dict[str, list[dict]] = {"base": [], "outage": []}
            for r in range(args.repeat):
                print(f"baseline {r + 1} of {args.repeat} ...", file=sys.stderr, flush=True)
                runs["base"].append(phase(services, f"base{r}", args.symbols, args.rate, args.seconds, None))
                print(f"with the broker paused, {r + 1} of {args.repeat} ...", file=sys.stderr, flush=True)
                runs["outage"].append(phase(services, f"outage{r}", args.symbols, args.rate, args.seconds,
                                            (broker.pid, args.seconds / 3, args.outage)))

    def pooled(kind: str, window: str | None = None) -> np.ndarray:
        parts = [run["windows"][window] if window else run["latencies"] for run in runs[kind]]
        return np.concatenate(parts)

    (base50, base99), (out50, out99) = (percentiles_us(pooled(k), (50, 99)) for k in ("base", "outage"))
    metrics = {
        "baseline_latency_us_p50": base50, "baseline_latency_us_p99": base99,
        "outage_latency_us_p50": out50, "outage_latency_us_p99": out99,
        "outage_ratio_p99": out99 / base99,
        **{f"outage_{name}_latency_us_p99": percentiles_us(pooled("outage", window), (99,))[0]
           for name, window in (("before_pause", "before"), ("during_pause", "during"), ("after_resume", "after"))},
        "baseline_p99_spread": _spread(runs["base"]),
        "outage_p99_spread": _spread(runs["outage"]),
        "baseline_rate_achieved_per_s": min(r["achieved"] for r in runs["base"]),
        "outage_rate_achieved_per_s": min(r["achieved"] for r in runs["outage"]),
        "circuit_opened_total": sum(r["opened"] for r in runs["outage"]),
        "decisions": sum(r["decisions"] for kind in runs.values() for r in kind),
        "forensics_missing": sum(r["missing"] for kind in runs.values() for r in kind),
        "forensics_duplicates": sum(r["duplicates"] for kind in runs.values() for r in kind),
    }
    params = {"symbols": args.symbols, "rate": args.rate, "seconds": args.seconds, "outage_s": args.outage,
              "repeat": args.repeat}
    return write_result(args.json, "outage", params, metrics, started_at)


if __name__ == "__main__":
    main()
