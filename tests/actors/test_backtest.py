"""Backtests on the real Redis: the live code, isolated, reproducible, and right against a reference."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import orjson
import pytest
import redis
from backtesting import Backtest
from backtesting.test import GOOG

from actors.backtest import BacktestError, BacktestSettings, discard_run, run_backtest
from actors.sharding import assign_symbols
from aggregates.policy import DecisionPolicy, Sizing
from aggregates.risk import RiskLimits
from aggregates.strategies import SmaCross, TradingCosts
from edge.eventstore import RedisApplicationRecorder, RedisDatastore, RedisStoreSettings
from edge.feeds import SyntheticFeed
from edge.history import History, HistorySource, load_history, parse_source
from edge.system_keys import SystemKeys
from edge.tick_stream import TickPublisher
from perf.reference import ReferenceSmaCross
from aggregates.performance import performance
from tests.actors.book_replay import committed_events, replay_book
from tests.actors.hot_path_support import make_hot_path, wait_until_decided
from tests.process_report import LoggedProcess, process_report, run, wait_until

GOOG_2005_2012 = (date(2005, 1, 1), date(2012, 12, 31))
WIDE_LIMITS = RiskLimits(max_position_fraction=100.0, max_leverage=100.0, daily_loss_limit=100.0)
"""Limits no order of the reference comes near: the `backtesting` package has no risk checks, and sma-cross
at 95 % of equity in one symbol is over the 25 % concentration limit (risk would cut every entry)."""


@pytest.mark.parametrize("commission", [0.0, 0.002])
def test_sma_cross_on_goog_trades_exactly_as_the_backtesting_package(redis_url, commission) -> None:
    start, end = GOOG_2005_2012
    history = load_history(parse_source("bundled:GOOG"), start, end)
    strategy = SmaCross(10, 20, 0.95, TradingCosts(commission_rate=commission))
    # Limits set wide (WIDE_LIMITS): the reference trades without any.
    settings = BacktestSettings(redis_url, f"ref{int(commission * 1e4)}", capital=50_000, keep_events=False,
                                limits=WIDE_LIMITS)
    result = run_backtest(settings, strategy, history)
    assert result.orders_cut == result.orders_refused == 0

    reference = Backtest(GOOG.loc[str(start):str(end)], ReferenceSmaCross, cash=50_000, commission=commission,
                         trade_on_close=True, finalize_trades=False).run()  # open trades stay open, as ours
    expected = [
        (int(t.Size), t.EntryTime.date().isoformat(), t.ExitTime.date().isoformat(), t.EntryPrice, t.ExitPrice)
        for t in reference._trades.itertuples()
    ]
    ours = [(int(t["size"]), t["entry_time"][:10], t["exit_time"][:10], t["entry_price"], t["exit_price"])
            for t in (trade.as_dict() for trade in result.ledger.trades)]
    assert len(ours) == reference["# Trades"] > 50
    assert ours == expected
    assert performance(result.ledger)["final_equity"] == pytest.approx(reference["Equity Final [$]"], rel=1e-12)


def _decisions_in_store(redis_url: str, store: str) -> dict[tuple[str, int], dict]:
    recorder = RedisApplicationRecorder(RedisDatastore(RedisStoreSettings(redis_url, key_prefix=store)))
    decisions = {}
    for n in recorder.select_notifications(1, 1_000_000):
        if n.topic == "Trading.Decision.Taken":
            state = orjson.loads(n.state)
            for field in ("timestamp", "correlation_id", "decision_id"):  # name the tick's id, not the decision
                state.pop(field)
            decisions[(state["symbol"], state["timestamp_ns"])] = state
    return decisions


def test_a_backtest_decides_exactly_as_the_live_pipeline_did_on_the_same_ticks(redis_url, namespace, policy) -> None:
    symbols = SyntheticFeed.symbol_names(4)
    ticks = list(SyntheticFeed(symbols, seed=31).ticks(300))
    hot = make_hot_path(redis_url, namespace, policy, symbols=symbols)
    TickPublisher(hot.client, hot.keys, symbols).publish(ticks, stamp=False)
    with hot:
        wait_until_decided(hot, len(ticks))
    live = _decisions_in_store(redis_url, hot.settings.store_name)

    history = History(HistorySource("synthetic"), tuple(symbols), ticks)
    # The live shard found the whole backlog waiting and read it read_count ticks per symbol at a time;
    # with one tick per symbol per round, cycles of read_count × symbols ticks in time order are the
    # same cycles, so every desk's view of the others is the same too.
    cycle = hot.settings.shard.read_count * len(symbols)
    settings = BacktestSettings(redis_url, "same-as-live", capital=hot.settings.capital, cycle_ticks=cycle)
    try:
        result = run_backtest(settings, policy, history)
        backtest = _decisions_in_store(redis_url, result.store_names[0])
    finally:
        discard_run(redis.Redis.from_url(redis_url), settings)
    assert len(live) == len(ticks) == result.decisions
    assert backtest == live


def test_a_sharded_backtest_holds_the_limits_on_the_whole_book_and_decides_the_same_every_run(
        redis_url, policy) -> None:
    symbols = SyntheticFeed.symbol_names(8)
    owned = assign_symbols(symbols, 2)
    assert all(owned)
    ticks = list(SyntheticFeed(symbols, seed=41).ticks(400))
    history = History(HistorySource("synthetic"), tuple(symbols), ticks)
    sized = DecisionPolicy(policy.specialists, sizing=Sizing(target_fraction=0.3))  # over the 25 % limit
    limits = RiskLimits(daily_loss_limit=0.003)
    client = redis.Redis.from_url(redis_url)
    runs = []
    try:
        for run in ("sharded-a", "sharded-b"):
            # Cycles of two rounds, as live at 1,000 ticks/s: the headroom covers prices moving within one
            # (a desk decides its batch on the others as they stood at the cycle's start; docs/design.md).
            settings = BacktestSettings(redis_url, run, capital=250_000, cycle_ticks=2 * len(symbols), shards=2,
                                        limits=limits)
            result = run_backtest(settings, sized, history)
            assert result.ticks == result.decisions == len(ticks)
            assert result.store_names == [settings.hot_path(i).store_name for i in range(2)]
            # The shards go in step, each seeing the other one cycle behind: the same run decides the same.
            runs.append([_decisions_in_store(redis_url, store) for store in result.store_names])
            book = replay_book(committed_events(redis_url, result.store_names), 250_000, limits)
            assert book.breaches == [] and book.growing_fills > 10
            assert result.orders_cut + result.orders_refused == len(book.refusals) > 0
            assert result.orders_cut > 0 and set(result.limits_broken) == {
                "position_concentration", "leverage", "daily_loss"}
            assert performance(result.ledger)["fills"] == sum(1 for _ in _fills(redis_url, result.store_names))
        assert runs[0] == runs[1]
        for shard, mine in enumerate(owned):
            assert {s for s, _ in runs[0][shard]} == set(mine)
    finally:
        for run in ("sharded-a", "sharded-b"):
            discard_run(client, BacktestSettings(redis_url, run, shards=2))
        client.close()


def _fills(redis_url: str, stores: list[str]):
    for store in stores:
        recorder = RedisApplicationRecorder(RedisDatastore(RedisStoreSettings(redis_url, key_prefix=store)))
        yield from (n for n in recorder.select_notifications(1, 1_000_000) if n.topic == "Trading.Order.Filled")


def test_a_failing_shard_stops_the_run_with_its_reason(redis_url, policy) -> None:
    symbols = SyntheticFeed.symbol_names(6)
    assert all(assign_symbols(symbols, 2))
    history = History(HistorySource("synthetic"), tuple(symbols), list(SyntheticFeed(symbols, seed=3).ticks(20)))
    settings = BacktestSettings(redis_url, "reused-sharded", shards=2)
    try:
        run_backtest(settings, policy, history)
        with pytest.raises(BacktestError, match=r"shard \d of the backtest failed: .*already has events"):
            run_backtest(settings, policy, history)
    finally:
        discard_run(redis.Redis.from_url(redis_url), settings)


def _dump(client: redis.Redis, pattern: str) -> dict[bytes, bytes]:
    return {key: client.dump(key) for key in sorted(client.scan_iter(match=pattern))}


def test_a_backtest_beside_a_live_system_changes_nothing_of_it(redis_url, namespace, policy) -> None:
    symbols = SyntheticFeed.symbol_names(3)
    hot = make_hot_path(redis_url, namespace, policy, symbols=symbols)
    TickPublisher(hot.client, hot.keys, symbols).publish(SyntheticFeed(symbols, seed=5).ticks(100), stamp=False)
    client = redis.Redis.from_url(redis_url)
    with hot:  # live, running, beside the backtest
        wait_until_decided(hot, 300)
        live_book = SystemKeys(namespace).risk_book
        before = {**_dump(client, f"{namespace}*"), **_dump(client, f"{{{namespace}*")}
        everything_before = set(client.scan_iter(match="*"))
        settings = BacktestSettings(redis_url, "beside-live", keep_events=True)
        # The very symbols the live desks trade: a shared key would show.
        run_backtest(settings, policy, History(HistorySource("synthetic"), tuple(symbols),
                                               list(SyntheticFeed(symbols, seed=6).ticks(200))))
        after = {**_dump(client, f"{namespace}*"), **_dump(client, f"{{{namespace}*")}
        # The live shard itself rewrites its risk figures (at least once a second): only its own field is there.
        assert client.hkeys(live_book) == [b"shard-0"]
        before.pop(live_book.encode(), None), after.pop(live_book.encode(), None)
        new_keys = set(client.scan_iter(match="*")) - everything_before
    assert before == after
    assert new_keys and all(settings.namespace.encode() in key for key in new_keys)
    assert discard_run(client, settings) == len(new_keys)
    client.close()


def test_a_run_id_cannot_be_reused_while_its_events_are_kept(redis_url, policy) -> None:
    history = load_history(parse_source("bundled:GOOG"), date(2010, 1, 1), date(2010, 3, 31))
    settings = BacktestSettings(redis_url, "twice", keep_events=True)
    try:
        run_backtest(settings, SmaCross(), history)
        with pytest.raises(Exception, match="already has events"):
            run_backtest(settings, SmaCross(), history)
    finally:
        discard_run(redis.Redis.from_url(redis_url), settings)


def test_without_keeping_events_the_run_leaves_its_store_nearly_empty(redis_url, policy) -> None:
    history = load_history(parse_source("bundled:GOOG"))
    settings = BacktestSettings(redis_url, "forgetful", keep_events=False, cycle_ticks=100)
    client = redis.Redis.from_url(redis_url)
    try:
        result = run_backtest(settings, policy, history)
        log_key = f"{{{result.store_names[0]}}}:log"
        assert client.xlen(log_key) == 0
        assert int(client.get(f"{{{result.store_names[0]}}}:seq")) == result.events > len(history.ticks)
    finally:
        discard_run(client, settings)
        client.close()


@pytest.fixture
def glassbox_env(tmp_path: Path, redis_url: str, model_registry) -> dict[str, str]:
    home = tmp_path / "home"
    shutil.copytree(model_registry.root, home / "models")
    return {**os.environ, "GLASSBOX_HOME": str(home), "REDIS_URL": redis_url, "GLASSBOX_LOG_LEVEL": "WARNING"}


def _glassbox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "actors.system.cli", *args], 600, env=env)


def test_the_same_backtest_twice_writes_byte_identical_json_and_is_listed(glassbox_env, tmp_path) -> None:
    args = ["backtest", "--source", "bundled:GOOG", "--from", "2005-01-01", "--to", "2012-12-31",
            "--capital", "50000"]
    first = _glassbox(glassbox_env, *args, "--out", str(tmp_path / "a"))
    second = _glassbox(glassbox_env, *args, "--out", str(tmp_path / "b"))
    assert first.returncode == 0, process_report(first)
    assert second.returncode == 0, process_report(second)
    a, b = (tmp_path / "a" / "report.json").read_bytes(), (tmp_path / "b" / "report.json").read_bytes()
    assert a == b
    report = orjson.loads(a)
    assert report["parameters"]["strategy"]["name"] == "regime-blend"
    assert report["data"]["ticks"] == 2013 and report["metrics"]["trades"] > 0
    for key in ("total_return", "annualised_return", "annualised_volatility", "sharpe_ratio", "sortino_ratio",
                "max_drawdown", "max_drawdown_peak", "max_drawdown_trough", "win_rate", "trades", "exposure"):
        assert key in report["metrics"]
    page = (tmp_path / "a" / "report.html").read_text()
    assert "data:image/png;base64," in page and "Sharpe ratio" in page

    listed = _glassbox(glassbox_env, "backtest", "list")
    assert listed.returncode == 0, process_report(listed)
    runs = [line for line in listed.stdout.splitlines() if "regime-blend" in line]
    assert len(runs) >= 2 and all("bundled:GOOG" in line and "2005-01-03" in line for line in runs), process_report(listed)


def test_a_sharded_backtest_on_synthetic_data_twice_writes_byte_identical_json(glassbox_env, tmp_path) -> None:
    args = ["backtest", "--source", "synthetic", "--symbols", "6", "--ticks", "300", "--shards", "2",
            "--strategy", "sma-cross"]
    runs = [_glassbox(glassbox_env, *args, "--out", str(tmp_path / name)) for name in "ab"]
    assert all(run.returncode == 0 for run in runs), "\n".join(process_report(run) for run in runs)
    a, b = ((tmp_path / name / "report.json").read_bytes() for name in "ab")
    assert a == b
    report = orjson.loads(a)
    assert report["parameters"]["shards"] == 2
    assert report["data"]["ticks"] == report["data"]["decisions"] == 1_800


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def test_a_sharded_backtest_stopped_by_sigterm_stops_its_shards_and_leaves_no_keys(glassbox_env, redis_url,
                                                                                     tmp_path) -> None:
    backtest = LoggedProcess(
        [sys.executable, "-m", "actors.system.cli", "backtest", "--source", "synthetic", "--symbols", "6", "--ticks", "100000",
         "--shards", "2", "--strategy", "sma-cross", "--run-id", "stopped", "--out", str(tmp_path)],
        tmp_path / "backtest.out", env=glassbox_env,
    )
    try:
        wait_until(lambda: "ticks/s" in backtest.output(), 300, "the shards to decide", backtest)
        shards = _children(backtest.pid)
        assert len(shards) >= 2, backtest.report()
        backtest.send_signal(signal.SIGTERM)  # as a service manager stops it: the parent only
        assert backtest.exit_code(120) == 130, backtest.report()
    finally:
        backtest.stop()
    assert not any(Path(f"/proc/{pid}").exists() for pid in shards), backtest.report()
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match="*backtest:stopped:*"))


def test_a_users_csv_with_a_bad_row_is_backtested_and_the_row_refused(glassbox_env, tmp_path) -> None:
    rows = ["timestamp,open,high,low,close,volume"]
    for i, row in enumerate(GOOG.loc["2010-01-01":"2010-12-31"].itertuples()):
        close = "nan" if i == 100 else f"{row.Close}"
        rows.append(f"{row.Index.date()},{row.Open},{row.High},{row.Low},{close},{row.Volume}")
    path = tmp_path / "acme.csv"
    path.write_text("\n".join(rows) + "\n")
    done = _glassbox(glassbox_env, "backtest", "--source", f"csv:{path}", "--strategy", "sma-cross",
                     "--fast", "5", "--slow", "15", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, process_report(done)
    report = orjson.loads((tmp_path / "out" / "report.json").read_bytes())
    assert report["data"]["symbols"] == ["ACME"]
    assert report["data"]["rejections"] == {"bad_price": 1}
    assert report["data"]["decisions"] == len(rows) - 2
    assert "1 ticks refused as bad input" in done.stdout, process_report(done)


@pytest.mark.parametrize("args,message", [
    (["--source", "bundled:NOPE"], "no bundled data for NOPE"),
    (["--source", "bundled:GOOG", "--from", "2020-01-01"], "has no data from 2020-01-01"),
    (["--from", "2010-01-01", "--to", "2009-01-01"], "is before --from"),
    (["--strategy", "nosuch"], "unknown --strategy"),
    (["--strategy", "sma-cross", "--fast", "30", "--slow", "20"], "fast < slow"),
    (["--strategy", "json:loads"], "not a subclass"),
    (["--commission", "-1"], "commission_rate"),
])
def test_bad_options_get_one_clear_error(glassbox_env, tmp_path, args, message) -> None:
    done = _glassbox(glassbox_env, "backtest", *args, "--out", str(tmp_path))
    assert done.returncode == 2, process_report(done)
    assert message in done.stderr and "Traceback" not in done.stderr, process_report(done)


@pytest.mark.parametrize("shards,data", [
    ("1", ["--source", "bundled:GOOG", "--from", "2010-01-01", "--to", "2010-03-31"]),
    ("2", ["--source", "synthetic", "--symbols", "6", "--ticks", "40"]),  # 6 symbols: both shards own some
])
def test_forensics_when_asked_explain_every_decision_in_the_runs_own_schema(
    glassbox_env, tmp_path, kafka_servers, database_url, shards, data
) -> None:
    import psycopg
    from psycopg import sql

    env = {**glassbox_env, "KAFKA_BOOTSTRAP_SERVERS": kafka_servers, "DATABASE_URL": database_url}
    schemas_before = _schemas(database_url)
    done = _glassbox(env, "backtest", *data, "--shards", shards, "--forensics", "--run-id", f"explained-{shards}",
                     "--out", str(tmp_path))
    assert done.returncode == 0, process_report(done)
    assert f"on {shards} shard(s)" in done.stdout, process_report(done)
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    s = sql.Identifier(f"backtest_explained_{shards}")
    with psycopg.connect(database_url) as conn:
        decisions = conn.execute(sql.SQL("SELECT count(*) FROM {}.decisions").format(s)).fetchone()[0]
        rows = conn.execute(sql.SQL(
            "SELECT decision_id, expected_value, model_output, shap_values FROM {}.forensics").format(s)).fetchall()
    assert decisions == len(rows) == report["data"]["decisions"] > 50
    assert len({r[0] for r in rows}) == len(rows)
    assert all(math.isclose(ev + sum(shap.values()), out, abs_tol=1e-6) for _, ev, out, shap in rows)
    assert _schemas(database_url) - schemas_before == {f"backtest_explained_{shards}"}  # and no other schema was touched
    if shards == "1":
        _the_report_links_each_trade_to_its_decisions_forensics(env, tmp_path, database_url, report, f"explained-{shards}")


def _the_report_links_each_trade_to_its_decisions_forensics(env: dict[str, str], tmp_path: Path, database_url: str,
                                                           report: dict, run_id: str) -> None:
    """report.html links entries and exits to the dashboard; the API serves the run's report and those forensics."""
    from starlette.testclient import TestClient

    from api.app import ApiConfig, create_app
    from api.auth import ApiTokens
    from edge.system_keys import SystemKeys
    from glassbox import Settings

    trades = report["trades"]
    assert trades and all(t["entry_decision_id"] and t["exit_decision_id"] for t in trades)
    page = (tmp_path / "report.html").read_text()
    first = trades[0]
    assert f'href="http://127.0.0.1:8000/#/decision/{first["entry_decision_id"]}?run={run_id}"' in page
    assert f'href="http://127.0.0.1:8000/#/decision/{first["exit_decision_id"]}?run={run_id}"' in page

    from projections.migrate import apply_migrations

    token = "report-reader-0123456789"
    live = f"live_{run_id.replace('-', '_')}"  # a live system's schema beside the run's, holding none of its decisions
    apply_migrations(database_url, live)
    app = create_app(ApiConfig(database_url, ApiTokens.parse(f"{token}:forensics:read"), schema=live,
                               redis_url=env["REDIS_URL"],
                               backtests_store=SystemKeys(Settings.from_env(env).namespace).backtests_store))
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        run = client.get(f"/api/v1/backtests/{run_id}", headers=auth).json()
        assert run["run"]["forensics"] and run["run"]["report"] and run["report_problem"] is None
        assert run["report"] == report  # report.json, as the run wrote it
        explained = client.get(f"/api/v1/forensics/{first['entry_decision_id']}", params={"run": run_id},
                               headers=auth)
        assert explained.status_code == 200, explained.text
        assert explained.json()["decision_id"] == first["entry_decision_id"]
        live = client.get(f"/api/v1/forensics/{first['entry_decision_id']}", headers=auth)
        assert live.status_code == 404  # a backtest's decision is not the live system's
        (tmp_path / "report.json").unlink()
        moved = client.get(f"/api/v1/backtests/{run_id}", headers=auth).json()
        assert moved["report"] is None and "no longer at" in moved["report_problem"]


def _schemas(database_url: str) -> set[str]:
    import psycopg

    # pg_temp_N / pg_toast_temp_N are PostgreSQL's own, made for a backend's first temporary
    # table (the projections stage their COPYs in one) and kept: not a schema the run made.
    with psycopg.connect(database_url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT schema_name FROM information_schema.schemata"
            " WHERE schema_name NOT LIKE 'pg\\_temp\\_%' AND schema_name NOT LIKE 'pg\\_toast\\_temp\\_%'").fetchall()}


def test_forensics_are_refused_for_a_strategy_without_a_model(glassbox_env, tmp_path) -> None:
    done = _glassbox(glassbox_env, "backtest", "--strategy", "sma-cross", "--forensics", "--out", str(tmp_path))
    assert done.returncode == 2 and "has no model" in done.stderr, process_report(done)


def test_a_users_own_strategy_class_is_loaded_by_name(glassbox_env, tmp_path) -> None:
    done = _glassbox(glassbox_env, "backtest", "--strategy", "tests.actors.example_strategy:BuyTheDip",
                     "--from", "2008-01-01", "--to", "2009-12-31", "--out", str(tmp_path))
    assert done.returncode == 0, process_report(done)
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    assert report["parameters"]["strategy"] == {"name": "buy-the-dip"}
    assert report["metrics"]["trades"] > 5
    assert all(abs(t["size"]) == 10 for t in report["trades"])


def _store_contents(redis_url: str, store: str) -> list[tuple[str, bytes]]:
    recorder = RedisApplicationRecorder(RedisDatastore(RedisStoreSettings(redis_url, key_prefix=store)))
    return [(n.topic, n.state) for n in recorder.select_notifications(1, 1_000_000)]


def test_nothing_a_backtest_records_comes_from_the_wall_clock(redis_url, policy) -> None:
    """Two runs at different moments record byte-identical events (timestamps included) and snapshots."""
    history = load_history(parse_source("bundled"), date(2017, 1, 1), date(2017, 12, 31))
    client = redis.Redis.from_url(redis_url)
    contents = []
    for run_id in ("clock-a", "clock-b"):
        settings = BacktestSettings(redis_url, run_id, checkpoint_every=100)
        try:
            result = run_backtest(settings, policy, history)
            snapshots = sorted(client.scan_iter(match=f"{{{result.store_names[0]}}}:snapshots:*"))
            assert snapshots
            contents.append((_store_contents(redis_url, result.store_names[0]),
                             [[fields for _, fields in client.xrange(key)] for key in snapshots]))
        finally:
            discard_run(client, settings)
    client.close()
    assert contents[0] == contents[1]


def test_backtest_desks_keep_every_tick_bound_but_the_wall_clock():
    from edge.ticks import TickBounds

    bounds = TickBounds(max_future_s=5.0, max_price=1e6)
    settings = BacktestSettings("redis://unused", "run-1", bounds=bounds)
    assert settings.hot_path().shard.actor.bounds == TickBounds(max_future_s=None, max_price=1e6)
