"""A real headless Chromium for the dashboard's tests: Debian's ``chromium``, driven by Playwright.

Playwright's own browser download cannot work here (no network at run time),
so the test set-up installs Debian's package the way the Redis launcher
installs ``redis-server``, and Playwright drives that binary.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

from edge.debian_packages import locate_or_install

__all__ = ["CHROMIUM_ARGS", "chromium_executable", "headless_chromium"]

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
    found = locate_or_install(lambda: shutil.which("chromium"), "chromium",
                              "chromium not found: installing Debian's chromium package for the browser tests ...",
                              install_if_missing=True)
    if found is None:
        raise RuntimeError("the dashboard tests need Debian's chromium: `apt-get install chromium` (as root)")
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
