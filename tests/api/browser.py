"""Real headless browsers for the dashboard's tests: Debian's ``chromium`` and ``firefox-esr``.

Playwright's own browser download cannot work here (no network at run time),
so the test set-up installs Debian's packages the way the Redis launcher
installs ``redis-server``. Playwright drives that Chromium; Firefox, which
Playwright can drive only in its own patched build, is driven over its
built-in Marionette protocol by Mozilla's ``marionette-driver``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from marionette_driver.marionette import Marionette
from playwright.sync_api import Browser, sync_playwright

from edge.child_process import die_with_parent, log_tail
from edge.debian_packages import locate_or_install

__all__ = ["CHROMIUM_ARGS", "FIREFOX_PREFS", "chromium_executable", "firefox_executable", "headless_chromium",
           "headless_firefox"]

CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps calling Google's hosts, which this closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_executable() -> str:
    """Debian's Chromium, installed first when it is missing and this process may install packages."""
    return _debian_browser("chromium", "chromium", "the dashboard tests")


def _debian_browser(command: str, package: str, needed_by: str) -> str:
    found = locate_or_install(lambda: shutil.which(command), package,
                              f"{command} not found: installing Debian's {package} package for the browser tests ...",
                              install_if_missing=True)
    if found is None:
        raise RuntimeError(f"{needed_by} need Debian's {package}: `apt-get install {package}` (as root)")
    return found


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable(), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# ---- Firefox: Debian's firefox-esr, driven over its built-in Marionette protocol ----

FIREFOX_START_TIMEOUT_S = 60.0
"""From spawning Firefox to a Marionette session: about 5 s here; a minute means it hangs."""

FIREFOX_PREFS: dict[str, bool | int | str] = {
    # Marionette on a port of its own choosing, written to <profile>/MarionetteActivePort: no race for a free one.
    "marionette.port": 0,
    # No first-run, what's-new or default-browser pages: the window opens on about:blank.
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.aboutwelcome.enabled": False,
    "browser.sessionstore.resume_from_crash": False,
    "toolkit.startup.max_resumed_crashes": -1,
    # Everything below calls Mozilla's or Google's hosts; this closed network would leave each call hanging.
    "app.update.disabledForTesting": True,
    "app.update.auto": False,
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "services.settings.server": "data:,#remote-settings-disabled",
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.usage.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "data:,",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.manage-offline-status": False,  # no network must not switch Firefox to offline mode
    "network.trr.mode": 5,  # no DNS over HTTPS
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "privacy.trackingprotection.enabled": False,
    "extensions.update.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "browser.search.update": False,
    "browser.region.network.url": "",
    "geo.provider.network.url": "",
    "media.gmp-manager.updateEnabled": False,
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.system.topstories": False,
    "browser.topsites.contile.enabled": False,
    "identity.fxaccounts.enabled": False,
    "dom.push.connection.enabled": False,
    "network.sntp.pools": "",
    # Release builds ignore services.settings.server: Remote Settings kept looking its host up (seen with
    # strace). Resolved to loopback instead, where its connections are refused at once. (A proxy pref did not
    # help: Firefox's own requests went direct after the proxy refused them.)
    "network.dns.localDomains": "firefox.settings.services.mozilla.com",
}
"""A throwaway profile's ``user.js``. Marionette adds its own recommended automation prefs on top."""


def firefox_executable() -> str:
    """Debian's Firefox ESR, installed first when it is missing and this process may install packages."""
    return _debian_browser("firefox-esr", "firefox-esr", "the Firefox dashboard tests")


@contextmanager
def headless_firefox(width: int = 1280, height: int = 900,
                     timeout_s: float = FIREFOX_START_TIMEOUT_S) -> Iterator[Marionette]:
    """A headless Firefox on a throwaway profile, yielded as a Marionette client with a session open.

    Playwright drives only its own patched Firefox build, which cannot be
    downloaded here, so Mozilla's Marionette client drives Debian's. Firefox is
    started here, not by mozrunner: the start-up gets one deadline and, when it
    fails, an error with Firefox's own log. It dies with this process.
    """
    with tempfile.TemporaryDirectory(prefix="glassbox-firefox-") as tmp:
        profile = Path(tmp)
        (profile / "user.js").write_text("".join(f"user_pref({json.dumps(name)}, {json.dumps(value)});\n"
                                                 for name, value in FIREFOX_PREFS.items()))
        log = profile / "firefox.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [firefox_executable(), "--marionette", "--headless", "--no-remote", "--profile", str(profile),
                 "about:blank"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent, env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1"})
        try:
            client = _marionette_session(process, profile, time.monotonic() + timeout_s, timeout_s)
            try:
                client.set_window_rect(width=width, height=height)
                client.timeout.page_load = 30  # a page that hangs fails its test, under the socket's timeout
                yield client
            finally:
                client.cleanup()  # ends the session
        finally:
            _stop(process)


def _marionette_session(process: subprocess.Popen[bytes], profile: Path, deadline: float,
                        timeout_s: float) -> Marionette:
    """Wait for Firefox's Marionette port, then open a session; a clear error (with Firefox's log) when it cannot."""
    port_file = profile / "MarionetteActivePort"
    while not port_file.exists() or not port_file.read_text().strip():
        if process.poll() is not None:
            raise RuntimeError(f"Firefox exited with status {process.returncode} before Marionette listened; "
                               f"its log:\n{log_tail(profile / 'firefox.log')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Firefox's Marionette did not listen within {timeout_s:g} s; its log:\n"
                               f"{log_tail(profile / 'firefox.log')}\n(`firefox-esr --headless --marionette "
                               f"--profile $(mktemp -d)` by hand shows the whole start-up)")
        time.sleep(0.05)
    client = Marionette(host="127.0.0.1", port=int(port_file.read_text()),
                        startup_timeout=max(1, int(deadline - time.monotonic())), socket_timeout=timeout_s)
    try:
        client.start_session()
    except Exception as error:
        raise RuntimeError(f"Firefox's Marionette listened but opened no session ({error}); its log:\n"
                           f"{log_tail(profile / 'firefox.log')}") from error
    return client


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group Firefox leads (its content processes too); SIGKILL after 10 s, and for stragglers."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(10)
    _signal_group(process.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # the whole group is gone already
