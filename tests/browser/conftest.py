"""Browser tests: Debian's Chromium driven by Playwright against the live test server.

``page`` is a signed-in owner's tab (the session cookie of ``client.force_login``, so tests do
not spend time on the login form); ``screenshot(page, name)`` saves what the test saw under
``var/screenshots/`` (named in the session notes). No worker process: the tests build the rows
they need with ``tests.factories``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import ROOT

# Playwright's sync API keeps an event loop running in this thread for the whole session;
# Django's ORM would then refuse to run here. The ORM calls are ours and synchronous, so the
# guard is lifted for the browser tests (as Playwright's own pytest plugin advises).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.django_db(transaction=True))
            item.add_marker(
                pytest.mark.skipif(
                    not shutil.which("chromium"), reason="Debian's chromium is not installed"
                )
            )


@pytest.fixture(scope="session")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(live_server, client, owner, chromium) -> Iterator:
    """A tab signed in as ``owner``; ``page.base`` is the live server's URL."""
    client.force_login(owner)
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value,
          "url": live_server.url}]
    )  # fmt: skip
    tab = context.new_page()
    tab.base = live_server.url
    tab.set_default_timeout(20_000)
    yield tab
    context.close()


def screenshot(page, name: str) -> Path:
    """Save the tab as ``var/screenshots/<name>.png`` and return the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
