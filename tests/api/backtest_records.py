"""Completed backtests recorded as ``glassbox backtest`` records them: one ``Backtest.Run.Completed`` event each."""

from __future__ import annotations

from eventsourcing.application import Application

from actors.application import event_store_env
from aggregates.backtest_run import BacktestRun

__all__ = ["record_run", "record_runs"]


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
                {"seconds": 0.5, "events": 2013, "events_per_s": 4026.0}, {}))
    finally:
        app.close()


def record_run(redis_url: str, store: str, run_id: str, report: dict[str, str], forensics_schema: str | None) -> None:
    """Record one regime-blend run whose report is at ``report["json"]``, explained into ``forensics_schema``."""
    app = Application(env=event_store_env(redis_url, store))
    try:
        app.save(BacktestRun.completed(
            run_id, {"strategy": {"name": "regime-blend"}, "source": "bundled:GOOG"},
            {"first": "2024-01-02", "last": "2024-01-04", "symbols": ["GOOG"], "ticks": 3},
            "v-test", {"total_return": 0.02, "sharpe_ratio": 1.2, "max_drawdown": -0.01, "trades": 2},
            {"seconds": 0.1, "events": 9, "events_per_s": 90.0}, report, forensics_schema))
    finally:
        app.close()
