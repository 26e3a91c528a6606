"""Tick → price-alert-committed latency, beside the same run's tick → decision-committed latency.

    python -m perf.alerts --symbols 20 --rate 1000 --seconds 30 --json out.json

A separate producer process publishes synthetic ticks at the offered rate; one
shard decides them with an alert rule tight enough for the synthetic walk to
cross often (``--move`` within ``--window-s`` seconds of event time). An alert
is committed in the same append as its tick's decision, so its latency is that
tick's: ``alert_latency_ms_p99`` is measured over the ticks that raised one,
``tick_latency_ms_p99`` over every tick of the same run. Targets: the seeds'
< 50 ms, and Glassbox's own: within the hot path's p99 (``alert_to_tick_p99``
at most 1).
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from actors.desk_actor import ActorSettings
from actors.runtime import HotPath, HotPathSettings
from actors.shard import ShardSettings
from aggregates.alerts import AlertRule, AlertRules
from edge.embedded_server import given_or_embedded
from edge.feeds import SyntheticFeed
from edge.redis_server import EmbeddedRedis
from glassbox import Settings
from perf.hotpath import model_registry, run_hot_path
from perf.report import write_result

__all__ = ["main"]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.alerts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered ticks/s (all symbols)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--move", type=float, default=0.005, help="the alert rule's move (a fraction)")
    parser.add_argument("--window-s", type=float, default=1.0, help="the alert rule's window (event time)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started_at = datetime.now(timezone.utc)
    settings = Settings.from_env()
    symbols = SyntheticFeed.symbol_names(args.symbols)
    rules = AlertRules(AlertRule(args.move, args.window_s))
    with tempfile.TemporaryDirectory(prefix="glassbox-perf-") as tmp, \
            given_or_embedded(settings.redis_url, EmbeddedRedis(Path(tmp) / "redis")) as url:
        shard = ShardSettings(actor=ActorSettings(alerts=rules))
        hot = HotPath.from_registry(HotPathSettings(url, namespace=f"perf-{uuid.uuid4().hex[:8]}:", shard=shard),
                                    symbols, model_registry(settings))
        hot.start()
        try:
            run_hot_path(hot, args.rate, 2.0)  # warm-up: compile, fill windows, connect
            alerts_before = len(hot.stats.alert_latencies_ns())
            ticks, achieved = run_hot_path(hot, args.rate, args.seconds)
            alerts = hot.stats.alert_latencies_ns()[alerts_before:]
        finally:
            hot.stop()
    tick_ms = np.percentile(ticks, [50, 99]) / 1e6 if len(ticks) else [float("nan")] * 2
    alert_ms = np.percentile(alerts, [50, 99]) / 1e6 if len(alerts) else [float("nan")] * 2
    metrics = {
        "alert_latency_ms_p50": float(alert_ms[0]), "alert_latency_ms_p99": float(alert_ms[1]),
        "tick_latency_ms_p50": float(tick_ms[0]), "tick_latency_ms_p99": float(tick_ms[1]),
        "alert_to_tick_p99": float(alert_ms[1] / tick_ms[1]) if len(alerts) and len(ticks) else float("nan"),
        "alerts": float(len(alerts)), "ticks": float(len(ticks)),
        "rate_offered_per_s": args.rate, "rate_achieved_per_s": achieved,
        "seed_target_met": float(len(alerts) > 0 and alert_ms[1] < 50.0),
    }
    params = {"symbols": args.symbols, "rate": args.rate, "seconds": args.seconds, "move": args.move,
              "window_s": args.window_s}
    return write_result(args.json, "alerts", params, metrics, started_at)


if __name__ == "__main__":
    main()
