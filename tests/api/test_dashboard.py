"""The dashboard in a real headless Chromium, against real uvicorn, Redis and PostgreSQL.

The REST pages read the read models the real pipeline filled (``projected``);
the overview reads the live stream of a real hot path that commits ticks
while the page is open. Every assertion is on what the page shows. Each test
saves a screenshot in its pytest tmp dir.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb
from playwright.sync_api import Page, expect

from api.auth import ApiTokens
from actors.shard_metrics import ShardMetricsPublisher
from edge.feeds import SyntheticFeed
from edge.system_keys import SystemKeys
from tests.actors.hot_path_support import STORE_SYMBOLS, make_hot_path, publish
from edge.run_names import forensics_schema
from projections.migrate import apply_migrations
from tests.api.backtest_records import record_run, record_runs
from tests.api.browser import headless_chromium
from tests.api.dashboard_support import dashboard_app
from tests.api.test_database_outage import served
from edge.child_process import free_port

SYMBOLS = SyntheticFeed.symbol_names(4)
READER = "dashboard-reader-0123456789"
TOKENS = ApiTokens.parse(f"{READER}:forensics:read,portfolio:read")
WAIT_MS = 30_000


@dataclass
class Dashboard:
    base: str
    hot: Any
    page: Page
    shots: Path
    namespace: str = ""

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def sign_in(self, token: str = READER) -> None:
        self.page.goto(self.base + "/")
        self.page.get_by_label("API token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()


class Ticker:
    """Publishes the synthetic feed's ticks a few at a time, and the shard's metrics, in a thread, while it runs.

    (A shard process publishes its metrics each second; the test's hot path is no process of its own.)
    """

    def __init__(self, hot: Any) -> None:
        self.hot = hot
        self.metrics = ShardMetricsPublisher(hot.client, hot.settings.store_name, hot.stats, len(SYMBOLS))
        self.ticks = iter(SyntheticFeed(SYMBOLS, seed=21).ticks(20_000))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            batch = [next(self.ticks) for _ in range(len(SYMBOLS))]
            publish(self.hot, batch)
            self.metrics.publish()
            self.stop.wait(0.1)

    def __enter__(self) -> Ticker:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


@contextmanager
def dashboard(projected, policy, tmp_path: Path, port: int | None = None) -> Iterator[Dashboard]:
    namespace = f"dash-{uuid.uuid4().hex[:8]}:"
    hot = make_hot_path(projected.redis_url, namespace, policy, SYMBOLS)
    with hot, served(dashboard_app(projected, hot, namespace, TOKENS), port) as base, headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(WAIT_MS)
        yield Dashboard(base, hot, page, tmp_path, namespace)


def test_a_wrong_token_is_told_so_and_a_right_one_signs_in(projected, policy, tmp_path) -> None:
    with dashboard(projected, policy, tmp_path) as d:
        d.sign_in("not-a-token-of-ours-at-all")
        expect(d.page.get_by_role("alert")).to_contain_text("That token was refused (401 unauthorized)")
        d.shot("wrong-token")
        d.page.get_by_label("API token").fill(READER)
        d.page.get_by_role("button", name="Sign in").click()
        expect(d.page.get_by_role("heading", name="Overview")).to_be_visible()


def test_the_overview_numbers_change_while_ticks_flow(projected, policy, tmp_path) -> None:
    with dashboard(projected, policy, tmp_path) as d, Ticker(d.hot):
        d.sign_in()
        expect(d.page.locator("#connection")).to_have_text(re.compile(r"^live"))
        rows = d.page.locator("#recent-decisions tbody tr")
        expect(rows).to_have_count(20)  # the 20 newest decisions, as committed
        # The test's symbols, and the pipeline's beneath them in the read models the stream seeds from.
        expect(d.page.locator("#positions tbody tr")).to_have_count(len(SYMBOLS) + len(STORE_SYMBOLS))
        expect(d.page.locator("#trading-state")).to_have_text("Trading: running")
        first_ticks = _number_once_shown(d.page, "#ticks-total")
        newest = rows.first.inner_text()
        d.page.wait_for_function(f"() => Number(document.querySelector('#ticks-total').textContent.replace(/,/g, ''))"
                                 f" > {first_ticks}")
        expect(rows.first).not_to_have_text(newest)  # a newer decision came in on top
        assert _number_once_shown(d.page, "#equity") > 0
        assert _number_once_shown(d.page, "#forensics-lag") >= 0  # from the read models the pipeline filled
        d.shot("overview")


def test_a_decision_clicked_opens_its_forensics_whose_shap_bars_add_up(projected, policy, tmp_path) -> None:
    with dashboard(projected, policy, tmp_path) as d:
        d.sign_in()
        d.page.get_by_role("link", name="Decisions").click()
        d.page.get_by_label("action").select_option("BUY")
        d.page.get_by_role("button", name="Filter").click()
        actions = d.page.locator("#decisions tbody td:nth-child(3)")
        expect(actions.first).to_have_text("BUY")
        assert set(actions.all_inner_texts()) == {"BUY"}
        link = d.page.locator("a.decision-link").first
        link.focus()
        d.page.keyboard.press("Enter")  # keyboard, not a click: the list works without a mouse
        numbers = d.page.locator(".waterfall-numbers tbody tr")
        expect(numbers.first).to_be_visible()
        shown = [row.locator("td").all_inner_texts() for row in numbers.all()]
        assert shown[0][0] == "expected value" and shown[-1][0] == "model output"
        expected, output = float(shown[0][1]), float(shown[-1][1])
        steps = [float(value) for _, value in shown[1:-1]]
        # Each figure is rounded to 4 decimals: the sum may be off by half a unit per figure.
        assert abs(expected + sum(steps) - output) <= 0.00005 * (len(steps) + 2)
        decision_id = d.page.url.rsplit("/", 1)[1]
        record = httpx.get(f"{d.base}/api/v1/forensics/{decision_id}",
                           headers={"Authorization": f"Bearer {READER}"}).json()
        assert output == pytest.approx(record["explanations"]["model_output"], abs=5e-5)
        expect(d.page.locator("#f-action")).to_have_text("BUY")
        expect(d.page.locator("#f-correlation")).to_have_text(record["audit_trail"]["correlation_id"])
        expect(d.page.locator("#risk-checks tbody tr")).to_have_count(len(record["audit_trail"]["risk_checks"]))
        expect(d.page.get_by_text(record["explanations"]["regime_reasoning"])).to_be_visible()
        assert d.page.locator("figure.chart svg[role=img]").count() == 3  # waterfall, regimes, weights
        d.shot("forensics")


def test_a_decision_being_explained_says_so_and_fills_in_when_ready(projected, policy, tmp_path) -> None:
    decision_id = str(_decision_ids(projected)[1])
    with dashboard(projected, policy, tmp_path) as d, _forensics_withheld(projected, decision_id) as restore:
        d.sign_in()
        expect(d.page.get_by_role("heading", name="Overview")).to_be_visible()
        d.page.goto(f"{d.base}/#/decision/{decision_id}")
        expect(d.page.locator("#pending")).to_contain_text("Being explained")
        d.shot("being-explained")
        restore()  # the forensics worker's row lands: the page asks again after Retry-After and fills in
        expect(d.page.locator(".waterfall-numbers")).to_be_visible()
        expect(d.page.locator("#pending")).to_have_count(0)


def _decision_ids(projected) -> list[uuid.UUID]:
    with psycopg.connect(projected.database_url) as conn:
        return [r[0] for r in conn.execute(sql.SQL("SELECT decision_id FROM {}.decisions ORDER BY decided_at, "
                                                   "decision_id").format(sql.Identifier(projected.schema)))]


@contextmanager
def _forensics_withheld(projected, decision_id: str) -> Iterator[Any]:
    """The decision's forensics row taken away (as if not computed yet); calling the yielded function puts it back."""
    table = sql.Identifier(projected.schema, "forensics")
    with psycopg.connect(projected.database_url, autocommit=True) as conn:
        row = conn.execute(sql.SQL("DELETE FROM {} WHERE decision_id = %s RETURNING *").format(table),
                           (decision_id,)).fetchone()
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            with psycopg.connect(projected.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("INSERT INTO {} VALUES ({})").format(
                    table, sql.SQL(", ").join(sql.Placeholder() * len(row))),
                    [Jsonb(v) if isinstance(v, (dict, list)) else v for v in row])
            restored = True
    try:
        yield restore
    finally:
        restore()


def test_the_backtests_list_shows_the_recorded_runs_newest_first(projected, policy, tmp_path) -> None:
    with dashboard(projected, policy, tmp_path) as d:
        record_runs(projected.redis_url, SystemKeys(d.namespace).backtests_store, ["run-older", "run-newer"])
        d.sign_in()
        d.page.get_by_role("link", name="Backtests").click()
        rows = d.page.locator("#backtests tbody tr")
        expect(rows).to_have_count(2)
        assert [r[0] for r in (row.locator("td").all_inner_texts() for row in rows.all())] == ["run-newer", "run-older"]
        expect(rows.first).to_contain_text("sma-cross")
        expect(rows.first).to_contain_text("12.5 %")  # total return 0.125
        expect(rows.first).to_contain_text("3 / 1")  # orders risk cut / refused


def test_a_backtests_report_opens_from_the_list_and_links_each_trade_to_its_forensics(
        projected, policy, tmp_path) -> None:
    run_id = f"dash-{uuid.uuid4().hex[:8]}"
    decisions = [str(d) for d in _decision_ids(projected)[:4]]
    report_path = _report_of_two_trades(tmp_path, decisions)
    with _explained_as_backtest(projected, forensics_schema(run_id)), dashboard(projected, policy, tmp_path) as d:
        record_run(projected.redis_url, SystemKeys(d.namespace).backtests_store, run_id,
                   {"json": str(report_path)}, forensics_schema(run_id))
        d.sign_in()
        d.page.get_by_role("link", name="Backtests").click()
        d.page.get_by_role("link", name=run_id).click()
        expect(d.page.get_by_role("heading", name=f"Backtest {run_id}")).to_be_visible()
        expect(d.page.locator("#b-forensics")).to_have_text("every decision explained")
        expect(d.page.locator("#trades tbody tr")).to_have_count(2)
        expect(d.page.locator("figure.chart svg[role=img]")).to_have_attribute(
            "aria-label", re.compile(r"^Equity, day by day: 3 points from 2024-01-02"))
        d.shot("backtest-report")
        why = d.page.locator("#trades tbody tr").first.get_by_role("link", name="why").first
        assert why.get_attribute("href") == f"#/decision/{decisions[0]}?run={run_id}"
        why.focus()
        d.page.keyboard.press("Enter")
        expect(d.page.get_by_role("heading", name=f"Decision {decisions[0]} (backtest {run_id})")).to_be_visible()
        expect(d.page.locator(".waterfall-numbers tbody tr").first).to_be_visible()  # read from the run's schema
        d.page.goto(f"{d.base}/#/decision/{decisions[0]}?run=no-such-run")
        expect(d.page.get_by_role("alert")).to_contain_text("unknown_run")
        # report.html's link, followed in a new tab (not signed in yet): signing in opens it.
        tab = d.page.context.browser.new_page()
        tab.set_default_timeout(WAIT_MS)
        tab.goto(f"{d.base}/#/decision/{decisions[1]}?run={run_id}")
        tab.get_by_label("API token").fill(READER)
        tab.get_by_role("button", name="Sign in").click()
        expect(tab.get_by_role("heading", name=f"Decision {decisions[1]} (backtest {run_id})")).to_be_visible()
        expect(tab.locator(".waterfall-numbers tbody tr").first).to_be_visible()


def _report_of_two_trades(tmp_path: Path, decisions: list[str]) -> Path:
    """A report.json as ``glassbox backtest`` writes it (format 2), of two trades made by ``decisions``."""
    import orjson

    trade = {"symbol": "GOOG", "size": 10.0, "entry_price": 100.0, "exit_price": 101.0, "commission": 0.0, "pnl": 10.0}
    report = {"report_format": 2, "metrics": {"total_return": 0.02, "sharpe_ratio": 1.2, "max_drawdown": -0.01},
              "equity_curve": [["2024-01-02", 100_000.0], ["2024-01-03", 101_000.0], ["2024-01-04", 102_000.0]],
              "trades": [{**trade, "entry_time": "2024-01-02T00:00:00Z", "exit_time": "2024-01-03T00:00:00Z",
                          "entry_decision_id": decisions[0], "exit_decision_id": decisions[1]},
                         {**trade, "entry_time": "2024-01-03T00:00:00Z", "exit_time": "2024-01-04T00:00:00Z",
                          "entry_decision_id": decisions[2], "exit_decision_id": decisions[3]}]}
    path = tmp_path / "report.json"
    path.write_bytes(orjson.dumps(report))
    return path


@contextmanager
def _explained_as_backtest(projected, schema: str) -> Iterator[None]:
    """The pipeline's read models copied into ``schema`` (made by the migrations), as a --forensics run leaves them."""
    apply_migrations(projected.database_url, schema)
    with psycopg.connect(projected.database_url, autocommit=True) as conn:
        for table in ("decisions", "decision_index", "forensics", "event_archive"):
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {} ON CONFLICT DO NOTHING").format(  # index: by trigger
                sql.Identifier(schema, table), sql.Identifier(projected.schema, table)))
    try:
        yield
    finally:
        with psycopg.connect(projected.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_an_unknown_decision_says_so(projected, policy, tmp_path) -> None:
    with dashboard(projected, policy, tmp_path) as d:
        d.sign_in()
        expect(d.page.get_by_role("heading", name="Overview")).to_be_visible()
        d.page.goto(f"{d.base}/#/decision/not-a-uuid")
        expect(d.page.get_by_role("alert")).to_contain_text("invalid_decision_id")


def test_the_stream_reconnects_after_the_api_restarts(projected, policy, tmp_path) -> None:
    port = free_port()
    namespace = f"dash-{uuid.uuid4().hex[:8]}:"
    hot = make_hot_path(projected.redis_url, namespace, policy, SYMBOLS)
    with hot, Ticker(hot), headless_chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        with served(dashboard_app(projected, hot, namespace, TOKENS), port) as base:
            d = Dashboard(base, hot, page, tmp_path)
            d.sign_in()
            expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator("#connection")).to_contain_text("reconnecting")  # the API is gone
        d.shot("reconnecting")
        with served(dashboard_app(projected, hot, namespace, TOKENS), port):
            # Another server run: a fresh snapshot (not resumed), and the numbers move again.
            expect(page.locator("#connection")).to_have_text("live")
            before = _number_once_shown(page, "#ticks-total")
            page.wait_for_function("() => Number(document.querySelector('#ticks-total').textContent"
                                   f".replace(/,/g, '')) > {before}")


def _number_once_shown(page: Page, selector: str) -> float:
    """The number an element shows, once it shows one (not the "—" of no data yet)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        text = page.locator(selector).inner_text().replace(",", "")
        try:
            return float(text)
        except ValueError:
            page.wait_for_timeout(100)
    raise AssertionError(f"{selector} showed no number within {WAIT_MS / 1000:g} s")
