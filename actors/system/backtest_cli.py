"""``glassbox backtest``: run a strategy over history and write its report; ``glassbox backtest list``.

The edge of the backtest: options are parsed and checked here, Redis is the
system's (``REDIS_URL``, a running ``glassbox up``'s, or the embedded one on
this home's data), and everything below gets plain settings.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from eventsourcing.application import Application

from actors.application import event_store_env
from actors.backtest import (
    BacktestResult,
    BacktestSettings,
    discard_run,
    new_run_id,
    run_backtest,
)
from actors.system.layout import DEFAULT_API_PORT
from actors.system.options import iso_date, positive_float, positive_int, run_id_arg
from actors.sharding import assign_symbols
from actors.system.services import system_backbone, system_redis
from aggregates.backtest_run import BacktestRun
from edge.run_names import forensics_schema
from aggregates.policy import DecisionPolicy, Sizing
from aggregates.registry import ModelRegistry
from aggregates.risk import RiskLimits
from aggregates.strategies import SmaCross, Strategy, TradingCosts
from edge.history import History, load_history, parse_source
from edge.system_keys import SystemKeys
from edge.ticks import TickBounds
from glassbox import GlassboxError, Settings
from projections.backtest_report import ReportLinks, build_report, write_report
from aggregates.performance import iso_day

__all__ = ["add_backtest_parser", "build_strategy", "records_store"]


def add_backtest_parser(commands: Any) -> None:
    bt = commands.add_parser(
        "backtest", help="replay history through the live desks with a strategy; write report.json and report.html",
        description="Replay history through the same actors, strategy, aggregates and event store as live "
                    "trading, in the run's own namespace, and write report.json and report.html. "
                    "`glassbox backtest list` lists the completed runs.")
    bt.add_argument("action", nargs="?", choices=("run", "list"), default="run",
                    help="run (default) a backtest, or list the completed ones")
    bt.add_argument("--source", default="bundled:GOOG",
                    help="bundled, bundled:GOOG[,EURUSD,...], synthetic, or csv:PATH (a .csv or .parquet file "
                         "of bars or ticks); default bundled:GOOG")
    bt.add_argument("--from", dest="start", type=iso_date, default=None, help="first day (YYYY-MM-DD, UTC)")
    bt.add_argument("--to", dest="end", type=iso_date, default=None, help="last day, included")
    bt.add_argument("--capital", type=positive_float, default=100_000.0, help="starting equity (default 100000)")
    bt.add_argument("--strategy", default="regime-blend",
                    help="regime-blend (default: the live policy), sma-cross, or module:Class of your own "
                         "Strategy subclass (see aggregates/strategies.py)")
    bt.add_argument("--fast", type=positive_int, default=10, help="sma-cross: fast average window (default 10)")
    bt.add_argument("--slow", type=positive_int, default=20, help="sma-cross: slow average window (default 20)")
    bt.add_argument("--fraction", type=positive_float, default=0.95,
                    help="sma-cross: fraction of equity a position takes, in whole units (default 0.95)")
    bt.add_argument("--commission", type=float, default=0.0,
                    help="commission as a fraction of each fill's notional (default 0; 0.001 = 10 bps)")
    bt.add_argument("--slippage-bps", type=float, default=0.0,
                    help="basis points each fill's price moves against the order (default 0)")
    bt.add_argument("--ticks-per-bar", type=int, choices=(1, 4), default=1,
                    help="bars become 1 tick at the close (default) or 4 along the OHLC path, as live")
    bt.add_argument("--model-version", default=None, help="regime-blend: model version (default: the latest)")
    bt.add_argument("--symbols", type=positive_int, default=100, help="synthetic: symbols (default 100)")
    bt.add_argument("--ticks", type=positive_int, default=10_000, help="synthetic: ticks per symbol (default 10000)")
    bt.add_argument("--tick-interval", type=positive_float, default=60.0,
                    help="synthetic: seconds between a symbol's ticks (default 60)")
    bt.add_argument("--seed", type=int, default=7, help="synthetic: seed")
    bt.add_argument("--out", type=Path, default=Path("."), help="directory for report.json and report.html (default .)")
    bt.add_argument("--run-id", type=run_id_arg, default=None,
                    help="name of the run (default: a new random id)")
    bt.add_argument("--shards", type=positive_int, default=1,
                    help="processes the symbols are split across, as `glassbox up --shards` splits them; "
                         "the risk limits bind on the whole book across them, as live (default 1)")
    bt.add_argument("--max-position-fraction", type=positive_float, default=None,
                    help="risk: largest position as a fraction of the book's equity "
                         "(default GLASSBOX_RISK_MAX_POSITION_FRACTION, 0.25)")
    bt.add_argument("--max-leverage", type=positive_float, default=None,
                    help="risk: largest gross exposure over equity (default GLASSBOX_RISK_MAX_LEVERAGE, 1.5)")
    bt.add_argument("--daily-loss-limit", type=positive_float, default=None,
                    help="risk: day's loss, as a fraction of start-of-day equity, after which no order may grow "
                         "a position (default GLASSBOX_RISK_DAILY_LOSS_LIMIT, 0.02)")
    bt.add_argument("--keep-events", action="store_true",
                    help="keep the run's events in its namespace afterwards (default: delete them, the "
                         "report and the completion record stay)")
    bt.add_argument("--forensics", action="store_true",
                    help="also explain every decision (SHAP) into the database schema backtest_<run id>, "
                         "through the relay and the live forensics workers (regime-blend only); report.html "
                         "then links each trade's decisions to their forensics pages on the dashboard")
    bt.add_argument("--dashboard-url", default=f"http://127.0.0.1:{DEFAULT_API_PORT}/",
                    help="the dashboard report.html links to with --forensics: the API of `glassbox up` "
                         "(default %(default)s)")
    bt.set_defaults(handler=backtest_command)


def build_strategy(args: argparse.Namespace, settings: Settings) -> Strategy:
    """The strategy ``--strategy`` names, with its options and the fill costs.

    Raises:
        GlassboxError: for an unknown name, a class that is not a Strategy, or bad parameters.
    """
    try:
        costs = TradingCosts(commission_rate=args.commission, slippage_bps=args.slippage_bps)
        if args.strategy == "regime-blend":
            registry = ModelRegistry(settings.model_dir)
            version = args.model_version or registry.latest()
            if version is None:
                from actors.system.training import train_specialists

                print("training the regime specialists on the bundled bars (first run only) ...", flush=True)
                version = train_specialists(registry)
            return DecisionPolicy(registry.load(version), costs=costs,
                                  sizing=Sizing(min_trade_fraction=settings.min_trade_fraction))
        if args.strategy == "sma-cross":
            return SmaCross(args.fast, args.slow, args.fraction, costs)
        if ":" in args.strategy:
            return _user_strategy(args.strategy, costs)
    except ValueError as error:
        raise GlassboxError(f"--strategy {args.strategy}: {error}") from None
    raise GlassboxError(f"unknown --strategy {args.strategy!r}: use regime-blend, sma-cross, or module:Class")


def _user_strategy(spec: str, costs: TradingCosts) -> Strategy:
    module_name, _, class_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise GlassboxError(f"--strategy {spec}: cannot import it ({error})") from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise GlassboxError(f"--strategy {spec}: {class_name} is not a subclass of aggregates.strategies.Strategy")
    strategy = cls()
    strategy.costs = costs
    return strategy


def risk_limits(args: argparse.Namespace, settings: Settings) -> RiskLimits:
    """The settings' risk limits (``GLASSBOX_RISK_*``) with the command line's overrides."""
    limits = RiskLimits.from_settings(settings)
    overrides = {name: getattr(args, name) for name in ("max_position_fraction", "max_leverage", "daily_loss_limit")
                 if getattr(args, name) is not None}
    return replace(limits, **overrides)


def records_store(settings: Settings) -> str:
    """The event store holding every run's ``Backtest.Run.Completed`` event."""
    return SystemKeys(settings.namespace).backtests_store


def backtest_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        with system_redis(settings) as url:
            return _list(url, settings)
    source = parse_source(args.source, synthetic_symbols=args.symbols, synthetic_ticks=args.ticks,
                          tick_interval_s=args.tick_interval, seed=args.seed)
    history = load_history(source, args.start, args.end, args.ticks_per_bar)
    strategy = build_strategy(args, settings)
    if args.forensics and not strategy.model_version:
        raise GlassboxError(f"--forensics explains a model's decisions; {strategy.name} has no model "
                            "(use --strategy regime-blend)")
    run_id = args.run_id or new_run_id()
    with system_redis(settings) as url:
        bt_settings = BacktestSettings(url, run_id, capital=args.capital, shards=args.shards,
                                       keep_events=args.keep_events or args.forensics,
                                       bounds=TickBounds.from_settings(settings), limits=risk_limits(args, settings))
        shards = sum(1 for owned in assign_symbols(history.symbols, args.shards) if owned)
        print(f"backtest {run_id}: {strategy.name} on {source.describe()}, {len(history.ticks):,} ticks of "
              f"{len(history.symbols)} symbol(s) on {shards} shard(s), {iso_day(history.start_ns)} to "
              f"{iso_day(history.end_ns)}", flush=True)
        client = redis.Redis.from_url(url)
        signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: shards stopped, the run's keys deleted
        try:
            result = run_backtest(bt_settings, strategy, history, _Progress())
            report = build_report(result.ledger, _parameters(args, strategy, source.describe(), bt_settings.limits),
                                  _data(history, result), strategy.model_version)
            schema = forensics_schema(run_id) if args.forensics else None
            json_path, html_path = write_report(report, args.out,
                                                ReportLinks(args.dashboard_url, run_id) if schema else None)
            if schema:  # before the record: a recorded run's forensics are complete
                _forensics(url, settings, result, schema)
            _record(url, settings, result, report, {"json": str(json_path.resolve()),
                                                    "html": str(html_path.resolve())}, schema)
        finally:
            if not args.keep_events:
                discard_run(client, bt_settings)
            client.close()
    m = report["metrics"]
    span_s = (history.end_ns - history.start_ns) / 1e9
    print(f"\n{result.ticks:,} ticks, {result.events:,} events in {result.seconds:.2f} s "
          f"({result.events_per_s:,.0f} events/s, {span_s / max(result.seconds, 1e-9):,.0f}× real time)")
    print(f"total return {100 * m['total_return']:.2f} %, Sharpe {_num(m['sharpe_ratio'])}, "
          f"max drawdown {100 * m['max_drawdown']:.2f} %, {m['trades']} trades, "
          f"win rate {_pct(m['win_rate'])}, exposure {100 * m['exposure']:.1f} %")
    print(f"risk cut {result.orders_cut:,} orders and refused {result.orders_refused:,}"
          + (f" (limits they would have broken: {result.limits_broken})" if result.limits_broken else ""))
    if result.rejected_ticks:
        print(f"{result.rejected_ticks:,} ticks refused as bad input: {result.rejections}")
    print(f"report: {json_path}  {html_path}")
    if args.keep_events:
        print(f"events kept in the store(s) {', '.join(result.store_names)}")
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _forensics(url: str, settings: Settings, result: BacktestResult, schema: str) -> None:
    """Project the run's events into its own schema, through its own topics, with the live workers."""
    import psycopg
    from psycopg import sql

    from backbone.topics import TopicSettings
    from projections.migrate import apply_migrations
    from actors.system.rebuild import project_stores

    topics = TopicSettings.from_settings(settings, prefix=f"{settings.topic_prefix}backtest-{result.run_id}.")
    print(f"\nexplaining {result.decisions:,} decisions into schema {schema} (relay, then the forensics "
          "workers) ...", flush=True)
    last = [0.0]

    def progress(line: str) -> None:
        if time.monotonic() - last[0] >= 1.0:
            print(f"  {line}", flush=True)
            last[0] = time.monotonic()

    with system_backbone(settings) as (kafka, database_url):
        apply_migrations(database_url, schema)
        project_stores(url, kafka, database_url, schema, result.store_names, ModelRegistry(settings.model_dir),
                       topics, f"backtest-{result.run_id}", progress)
        with psycopg.connect(database_url) as conn:
            explained = conn.execute(sql.SQL("SELECT count(*) FROM {}.forensics").format(
                sql.Identifier(schema))).fetchone()[0]
    print(f"forensics of {explained:,} decisions in schema {schema}: the API serves them at "
          f"/api/v1/forensics/{{decision_id}}?run={result.run_id}, the dashboard from the run's report")


class _Progress:
    """One status line on stderr, at most a few times a second."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, done: int, total: int, seconds: float) -> None:
        now = time.monotonic()
        if now - self._last < 0.5 and done < total:
            return
        self._last = now
        rate = done / seconds if seconds > 0 else 0.0
        print(f"\r{done:,} / {total:,} ticks ({100 * done / total:.0f} %), {rate:,.0f} ticks/s",
              end="", file=sys.stderr, flush=True)


def _parameters(args: argparse.Namespace, strategy: Strategy, source: str, limits: RiskLimits) -> dict[str, Any]:
    return {
        "strategy": strategy.describe(),
        "source": source,
        "from": args.start.isoformat() if args.start else None,
        "to": args.end.isoformat() if args.end else None,
        "capital": args.capital,
        "commission_rate": strategy.costs.commission_rate,
        "slippage_bps": strategy.costs.slippage_bps,
        "ticks_per_bar": args.ticks_per_bar,
        "shards": args.shards,
        "risk_limits": {"max_position_fraction": limits.max_position_fraction, "max_leverage": limits.max_leverage,
                        "daily_loss_limit": limits.daily_loss_limit},
        "fills": "on the deciding tick at its price moved by the slippage; commission on the notional",
    }


def _data(history: History, result: BacktestResult) -> dict[str, Any]:
    return {
        "source": history.source.describe(),
        "symbols": list(history.symbols),
        "ticks": result.ticks,
        "decisions": result.decisions,
        "events": result.events,
        "rejected_ticks": result.rejected_ticks,
        "rejections": dict(sorted(result.rejections.items())),
        "orders_cut_by_risk": result.orders_cut,
        "orders_refused_by_risk": result.orders_refused,
        "limits_broken": dict(result.limits_broken),
        "first": iso_day(history.start_ns),
        "last": iso_day(history.end_ns),
    }


def _record(url: str, settings: Settings, result: BacktestResult, report: dict[str, Any],
            written: dict[str, str], schema: str | None) -> None:
    app = Application(env=event_store_env(url, records_store(settings)))
    try:
        data = report["data"]
        app.save(BacktestRun.completed(
            result.run_id, report["parameters"],
            {"first": data["first"], "last": data["last"], "symbols": data["symbols"], "ticks": data["ticks"],
             "orders_cut_by_risk": data["orders_cut_by_risk"], "orders_refused_by_risk": data["orders_refused_by_risk"]},
            report["model_version"], report["metrics"],
            {"seconds": result.seconds, "events": result.events, "events_per_s": result.events_per_s},
            written, schema,
        ))
    finally:
        app.close()


def _list(url: str, settings: Settings) -> int:
    app = Application(env=event_store_env(url, records_store(settings)))
    try:
        runs = [n for n in app.recorder.select_notifications(1, 1_000_000)  # type: ignore[attr-defined]
                if n.topic == "Backtest.Run.Completed"]
        if not runs:
            print("no completed backtests yet: run `glassbox backtest`")
            return 0
        print(f"{'run':<14}{'strategy':<16}{'source':<22}{'from':<12}{'to':<12}{'return':>9}{'Sharpe':>8}"
              f"{'max DD':>8}{'trades':>8}")
        for n in runs:
            run = app.repository.get(n.originator_id)
            m, p, d = run.metrics, run.parameters, run.data_range
            print(f"{run.run_id:<14}{p['strategy']['name']:<16}{p['source'][:21]:<22}{d['first']:<12}{d['last']:<12}"
                  f"{100 * m['total_return']:>8.2f}%{_num(m['sharpe_ratio']):>8}{100 * m['max_drawdown']:>7.2f}%"
                  f"{m['trades']:>8}")
    finally:
        app.close()
    return 0


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"



