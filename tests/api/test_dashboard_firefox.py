"""The dashboard in a real headless Firefox (Debian's ESR, over Marionette), against real uvicorn, Redis and PostgreSQL.

The issue asks for a dashboard that works in a current Chromium *and* Firefox
without a network connection; ``test_dashboard`` covers Chromium in depth, and
these three tests take the main paths again in Firefox: signing in, the live
overview, a decision's forensics. Same app and data as there; every assertion
is on what the page shows, each waits by polling with a deadline, and each
test saves a screenshot in its pytest tmp dir. One Firefox serves the module
(each test's server has its own port, so its own origin and session storage).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2 as httpx
import pytest
from marionette_driver import errors
from marionette_driver.by import By
from marionette_driver.keys import Keys
from marionette_driver.marionette import Marionette, WebElement
from marionette_driver.wait import Wait

from tests.actors.hot_path_support import STORE_SYMBOLS, make_hot_path
from tests.api.browser import headless_firefox
from tests.api.dashboard_support import dashboard_app
from tests.api.test_dashboard import READER, SYMBOLS, TOKENS, Ticker
from tests.api.test_database_outage import served

WAIT_S = 30.0
_Shown = TypeVar("_Shown")


@pytest.fixture(scope="module")
def firefox() -> Iterator[Marionette]:
    with headless_firefox() as client:
        yield client


@dataclass
class FirefoxDashboard:
    base: str
    hot: Any
    browser: Marionette
    shots: Path

    def shot(self, name: str) -> Path:
        path = self.shots / f"firefox-{name}.png"
        path.write_bytes(self.browser.screenshot(format="binary", full=True))
        return path

    def until(self, condition: Callable[[Marionette], _Shown], what: str) -> _Shown:
        """``condition``'s first truthy answer within :data:`WAIT_S`; elements the page is replacing are looked up again."""
        return Wait(self.browser, timeout=WAIT_S, interval=0.1,
                    ignored_exceptions=(errors.NoSuchElementException, errors.StaleElementException)).until(
            condition, message=f"the page did not show {what} within {WAIT_S:g} s")

    def find(self, xpath: str) -> WebElement:
        return self.browser.find_element(By.XPATH, xpath)

    def texts(self, css: str) -> list[str]:
        """The rendered text of each element ``css`` matches, read in one go (the overview redraws its tables
        on each stream message: element by element, one of them would be replaced meanwhile)."""
        return self.browser.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText.trim())", [css])

    def text(self, css: str) -> str:
        """The text the first element ``css`` matches shows now (NoSuchElementException, which a wait retries)."""
        shown = self.texts(css)
        if not shown:
            raise errors.NoSuchElementException(f"nothing on the page matches {css}")
        return shown[0]

    def number(self, css: str) -> float:
        """The number an element shows, once it shows one (not the "—" of no data yet)."""
        return self.until(lambda _: _as_number(self.text(css)), f"a number in {css}")[0]

    def count(self, css: str) -> int:
        return len(self.browser.find_elements(By.CSS_SELECTOR, css))

    def field(self, label: str) -> WebElement:
        """The form control a visible label names (as a user finds it); the label may hold the control too."""
        return self.until(lambda _: self.find(f"//*[@id=//label[normalize-space(text())='{label}']/@for]"),
                          f"a field labelled {label!r}")

    def press(self, button: str) -> None:
        self.until(lambda _: self.find(f"//button[normalize-space()='{button}']"), f"a {button!r} button").click()

    def sign_in(self, token: str = READER) -> None:
        self.browser.navigate(self.base + "/")
        self.enter_token(token)

    def enter_token(self, token: str) -> None:
        field = self.field("API token")
        field.clear()
        field.send_keys(token)
        self.press("Sign in")

    def heading(self, name: str) -> WebElement:
        return self.until(lambda _: _displayed(self.find(f"//h1[normalize-space()='{name}']")), f"the heading {name!r}")


def _as_number(text: str) -> list[float]:
    """``[the number]``, or ``[]`` for text that is none: a list, since a wait takes a shown 0 as an answer too."""
    try:
        return [float(text.replace(",", ""))]
    except ValueError:
        return []


def _displayed(element: WebElement) -> WebElement | None:
    return element if element.is_displayed() else None


@contextmanager
def dashboard(firefox: Marionette, projected, policy, tmp_path: Path) -> Iterator[FirefoxDashboard]:
    namespace = f"dash-ff-{uuid.uuid4().hex[:8]}:"
    hot = make_hot_path(projected.redis_url, namespace, policy, SYMBOLS)
    with hot, served(dashboard_app(projected, hot, namespace, TOKENS)) as base:
        d = FirefoxDashboard(base, hot, firefox, tmp_path)
        try:
            yield d
        except BaseException:
            with suppress(Exception):  # best effort: the browser may be what failed
                d.shot("at-failure")  # what the page showed instead
            raise
        finally:
            firefox.navigate("about:blank")  # leaves the page (and its stream) before its server goes


def test_firefox_tells_a_wrong_token_so_and_signs_a_right_one_in(firefox, projected, policy, tmp_path) -> None:
    with dashboard(firefox, projected, policy, tmp_path) as d:
        d.sign_in("not-a-token-of-ours-at-all")
        d.until(lambda _: "That token was refused (401 unauthorized)" in d.text("[role=alert]"),
                "the refusal of the wrong token")
        d.shot("wrong-token")
        d.enter_token(READER)
        d.heading("Overview")
        d.shot("signed-in")


def test_firefox_shows_the_overview_numbers_change_while_ticks_flow(firefox, projected, policy, tmp_path) -> None:
    with dashboard(firefox, projected, policy, tmp_path) as d, Ticker(d.hot):
        d.sign_in()
        d.until(lambda _: d.text("#connection").startswith("live"), "the stream as live")
        d.until(lambda _: d.count("#recent-decisions tbody tr") == 20, "the 20 newest decisions")
        # The read models' positions (the pipeline's store) seed the book beneath the hot path's own.
        d.until(lambda _: sorted(d.texts("#positions tbody td:first-child")) == sorted(SYMBOLS + STORE_SYMBOLS),
                "a row per position")
        d.until(lambda _: d.text("#trading-state") == "Trading: running", "trading as running")
        first_ticks = d.number("#ticks-total")
        newest = d.text("#recent-decisions tbody tr")
        d.until(lambda _: d.number("#ticks-total") > first_ticks, f"more ticks than {first_ticks:,.0f}")
        d.until(lambda _: d.text("#recent-decisions tbody tr") != newest, "a newer decision on top")
        assert d.number("#equity") > 0
        assert d.number("#forensics-lag") >= 0  # from the read models the pipeline filled
        d.shot("overview")


def test_firefox_opens_a_decision_from_the_list_whose_shap_rows_add_up(firefox, projected, policy, tmp_path) -> None:
    with dashboard(firefox, projected, policy, tmp_path) as d:
        d.sign_in()
        d.heading("Overview")
        d.find("//nav//a[normalize-space()='Decisions']").click()
        d.heading("Decisions")
        d.field("action").find_element(By.XPATH, "./option[normalize-space()='BUY']").click()
        d.press("Filter")
        d.until(lambda _: set(d.texts("#decisions tbody td:nth-child(3)")) == {"BUY"}, "only BUY decisions")
        assert "action=BUY" in d.browser.get_url()
        d.browser.find_element(By.CSS_SELECTOR, "a.decision-link").send_keys(Keys.ENTER)  # the list works by keyboard
        rows = d.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".waterfall-numbers tbody tr"), "the SHAP numbers")
        shown = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]
        assert shown[0][0] == "expected value" and shown[-1][0] == "model output"
        expected, output = float(shown[0][1]), float(shown[-1][1])
        steps = [float(value) for _, value in shown[1:-1]]
        # Each figure is rounded to 4 decimals: the sum may be off by half a unit per figure.
        assert abs(expected + sum(steps) - output) <= 0.00005 * (len(steps) + 2)
        decision_id = d.browser.get_url().rsplit("/", 1)[1]
        record = httpx.get(f"{d.base}/api/v1/forensics/{decision_id}",
                           headers={"Authorization": f"Bearer {READER}"}).json()
        assert output == pytest.approx(record["explanations"]["model_output"], abs=5e-5)
        assert d.text("#f-action") == "BUY"
        assert len(d.browser.find_elements(By.CSS_SELECTOR, "figure.chart svg[role=img]")) == 3
        d.shot("forensics")
