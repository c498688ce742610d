"""Browser fixtures: the real app under uvicorn on a loopback port, Debian's Chromium
driven by Playwright (never a downloaded browser), and screenshots in ``tests/artifacts``.

Each test gets a fresh browser context (no cookies), signs in with an API key made by
the ``principal`` factory, and builds its own rows, so tests never see each other's data.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from contracts.client import UsefirstChain
from ledger.settings import Settings
from tests.api.conftest import principal  # noqa: F401  (the API tests' fixture, reused)
from tests.api.support import LiveServer
from tests.ui.helpers import TIMEOUT_MS

CHROMIUM = "/usr/bin/chromium"
# Headless and offline: nothing but the loopback server is ever contacted.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def ui_server(database: Settings) -> Iterator[LiveServer]:
    server = LiveServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser, ui_server: LiveServer) -> Iterator[BrowserContext]:
    ctx = browser.new_context(
        base_url=ui_server.url, accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab that fails the test if the page's Content-Security-Policy blocked anything
    (an inline style or script would be a bug: nothing of ours needs one)."""
    tab = context.new_page()
    blocked: list[str] = []
    tab.on(
        "console",
        lambda message: (
            blocked.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield tab
    assert not blocked, f"blocked by the Content-Security-Policy: {blocked}"


@pytest.fixture(scope="session")
def chain(chain_settings: Settings) -> UsefirstChain:
    """The contracts of the session's chain, recorded in the session's data directory, so
    the Celery worker (same settings) anchors against them too."""
    return UsefirstChain.connect(chain_settings, deploy=True)
