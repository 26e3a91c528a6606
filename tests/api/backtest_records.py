"""Completed backtests recorded as ``glassbox backtest`` records them: one ``Backtest.Run.Completed`` event each."""

from __future__ import annotations

from eventsourcing.application import Application

from actors.application import event_store_env
from aggregates.backtest_run import BacktestRun

__all__ = ["record_runs"]


def record_runs(redis_url: str, store: str, run_ids: list[str]) -> None:
    """Record one sma-cross run per id, in order (the last is the newest)."""
    app = Application(env=event_store_env(redis_url, store))
    try:
        for n, run_id in enumerate(run_ids):
            app.save(BacktestRun.completed(
                run_id, {"strategy": {"name": "sma-cross", "fast": 10, "slow": 20}, "source": "bundled:GOOG"},
                {"first": "2005-01-03", "last": "2012-12-31", "symbols": ["GOOG"], "ticks": 2013,
                 "orders_cut_by_risk": 3, "orders_refused_by_risk": 1},
                "", {"total_return": 0.125, "sharpe_ratio": 0.8 + n, "max_drawdown": -0.2, "trades": 40 + n},
                {"seconds": 0.5, "events": 2013, "events_per_s": 4026.0}))
    finally:
        app.close()
