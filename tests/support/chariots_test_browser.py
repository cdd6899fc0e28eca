"""A headless Chromium driven by Playwright, for the tests that look at pages as people do.

Playwright's own browser download does not work offline, so this drives the system's
Chromium (Debian's ``chromium`` package). Tests that need it call :func:`open_browser`, which
skips when Playwright or Chromium is missing, or fails when ``CHARIOTS_REQUIRE_BROWSER=1`` (CI).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chariots_test_pictures import require

CHROMIUM = os.environ.get("CHARIOTS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def browser_available() -> bool:
    """Whether Playwright and a Chromium binary are both here."""
    return importlib.util.find_spec("playwright") is not None and os.path.exists(CHROMIUM)


@contextmanager
def launch_browser() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``), closed afterwards."""
    require("Playwright with Chromium", browser_available(), "CHARIOTS_REQUIRE_BROWSER")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_browser() -> Iterator[Any]:
    """A page of a headless Chromium launched for it alone."""
    with launch_browser() as browser:
        yield browser.new_page()
