"""How fast a backtest replays history through the live desks, beside the `backtesting` package.

    python -m perf.backtest --json out.json

1. ``glassbox_bars_per_s`` / ``reference_bars_per_s`` (target: Glassbox
   faster per bar): the sma-cross strategy (10/20) on the bundled GOOG daily
   bars, 2004-2013, by Glassbox's backtest (whole call: desks started, every
   decision committed to the event store) and by the ``backtesting``
   package's ``Backtest.run`` with the same rule and fill convention; best of
   ``--repeat`` runs each.
2. ``events_per_s`` and ``speedup_vs_realtime`` (target ≥ 10,000×): the
   default regime-blend strategy over a synthetic intraday set, ``--symbols``
   × ``--ticks`` ticks one ``--tick-interval`` apart per symbol (default 100 ×
   100,000 one minute apart: 69 days of market time), split across
   ``--shards`` processes as ``glassbox backtest --shards`` splits it
   (default two per CPU: a shard's process idles while Redis stores its
   cycle, and a second shard per core fills that gap — on 2 cores, 4 shards
   decided 8 % more events/s than 2 over the default set, ~20 % more in
   short runs, and 6 or 8 no more than 4); speed-up is the market time
   covered over the wall time taken deciding. The run does not keep its
   events (each cycle's are dropped once booked), or its store would need
   ~20 GB of memory.
3. ``bundled_events_per_s``: regime-blend over all the bundled data.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis
from backtesting import Backtest
from backtesting.test import GOOG

from actors.backtest import (
    BacktestResult,
    BacktestSettings,
    discard_run,
    new_run_id,
    run_backtest,
)
from actors.system.training import train_specialists
from aggregates.policy import DecisionPolicy
from aggregates.registry import ModelRegistry
from aggregates.strategies import SmaCross, Strategy
from edge.history import History, load_history, parse_source
from edge.redis_server import EmbeddedRedis
from perf.reference import ReferenceSmaCross
from perf.report import write_result


def _run(url: str, strategy: Strategy, history: History, keep: bool = True, shards: int = 1) -> BacktestResult:
    settings = BacktestSettings(url, new_run_id(), capital=100_000.0, keep_events=keep, shards=shards)
    client = redis.Redis.from_url(url)
    try:
        return run_backtest(settings, strategy, history, _progress if len(history.ticks) > 100_000 else None)
    finally:
        discard_run(client, settings)
        client.close()


_last_progress = [0.0]


def _progress(done: int, total: int, seconds: float) -> None:
    if time.monotonic() - _last_progress[0] > 10 or done == total:
        _last_progress[0] = time.monotonic()
        print(f"  {done:,} / {total:,} ticks, {done / max(seconds, 1e-9):,.0f} ticks/s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m perf.backtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=100_000, help="synthetic ticks per symbol")
    parser.add_argument("--tick-interval", type=float, default=60.0, help="seconds between a symbol's ticks")
    parser.add_argument("--shards", type=int, default=2 * (os.cpu_count() or 1),
                        help="processes for the synthetic set (default: two per CPU, see the docstring)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the GOOG comparison; the best is kept")
    parser.add_argument("--also-sma-cross", action="store_true", help="also replay the synthetic set with sma-cross")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started_at = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="glassbox-perf-backtest-"))
    try:
        return _measure(args, work, started_at)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the Redis append-only file grows to gigabytes


def _measure(args: argparse.Namespace, work: Path, started_at: datetime) -> dict[str, object]:
    registry = ModelRegistry(work / "models")
    print("training the specialists ...", file=sys.stderr, flush=True)
    policy = DecisionPolicy(registry.load(train_specialists(registry, seed=7)))
    metrics: dict[str, float] = {}
    with EmbeddedRedis(work / "redis") as redis_server:
        url = redis_server.url
        goog = load_history(parse_source("bundled:GOOG"))
        bars = len(goog.ticks)
        print(f"GOOG sma-cross: Glassbox and the backtesting package, {args.repeat} runs each ...",
              file=sys.stderr, flush=True)
        ours = reference = math.inf
        for _ in range(args.repeat):
            began = time.perf_counter()
            result = _run(url, SmaCross(10, 20, 0.95), goog)
            ours = min(ours, time.perf_counter() - began)
            began = time.perf_counter()
            stats = Backtest(GOOG, ReferenceSmaCross, cash=100_000.0, trade_on_close=True,
                             finalize_trades=False).run()
            reference = min(reference, time.perf_counter() - began)
        if len(result.ledger.trades) != stats["# Trades"]:
            raise SystemExit(f"the two engines disagree: {len(result.ledger.trades)} vs {stats['# Trades']} trades")
        metrics.update(glassbox_bars_per_s=bars / ours, reference_bars_per_s=bars / reference,
                       glassbox_vs_reference_ratio=reference / ours, goog_bars=float(bars))

        print("regime-blend over all the bundled data ...", file=sys.stderr, flush=True)
        bundled = _run(url, policy, load_history(parse_source("bundled")))
        metrics.update(bundled_events_per_s=bundled.events_per_s, bundled_ticks=float(bundled.ticks))

        source = parse_source("synthetic", synthetic_symbols=args.symbols, synthetic_ticks=args.ticks,
                              tick_interval_s=args.tick_interval)
        print(f"generating {args.symbols} × {args.ticks:,} synthetic ticks ...", file=sys.stderr, flush=True)
        synthetic = load_history(source)
        span_s = (synthetic.end_ns - synthetic.start_ns) / 1e9 + args.tick_interval
        strategies: list[tuple[str, Strategy]] = [("", policy)]
        if args.also_sma_cross:
            strategies.append(("sma_cross_", SmaCross(10, 20, 0.95)))
        for prefix, strategy in strategies:
            print(f"{strategy.name} over the synthetic set ...", file=sys.stderr, flush=True)
            began = time.perf_counter()
            run = _run(url, strategy, synthetic, keep=False, shards=args.shards)
            wall = time.perf_counter() - began
            metrics.update({
                f"{prefix}events_per_s": run.events_per_s,
                f"{prefix}ticks_per_s": run.ticks / run.seconds,
                f"{prefix}speedup_vs_realtime": span_s / run.seconds,
                f"{prefix}seconds": run.seconds,
                f"{prefix}seconds_with_start_up": wall,
                f"{prefix}events": float(run.events),
            })
        metrics["market_seconds"] = span_s
    params = {"symbols": args.symbols, "ticks": args.ticks, "tick_interval_s": args.tick_interval, "shards": args.shards,
              "repeat": args.repeat, "strategy": "regime-blend", "goog_strategy": "sma-cross 10/20"}
    return write_result(args.json, "backtest", params, metrics, started_at)


if __name__ == "__main__":
    main()
