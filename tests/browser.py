"""Headless Chromium (Debian's, which `make setup` installs in CI) driven by Playwright,
for the tests of pages: each page is opened in a real browser, in more than one language,
and a screenshot of it is kept (``screenshot``) so that it can be looked at."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# These machines are offline: no background connections, no first-run pages.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Where screenshots go (PATRON_SCREENSHOTS, else var/screenshots).
SCREENSHOTS = Path(os.environ.get("PATRON_SCREENSHOTS", "var/screenshots"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for a test module. Missing, it fails the run in CI (where `make setup`
    installs it) and skips the test elsewhere. Not for the whole process: while Playwright's
    sync API runs, its event loop is the thread's, and a later test's ``asyncio.run``
    would fail."""
    if not Path(CHROMIUM).exists():
        message = "Chromium is not installed (`CI=true make setup` installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS,
                                              headless=True)
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Any, name: str) -> Path:
    """The page as the browser draws it, kept as ``{SCREENSHOTS}/{name}.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
