"""In a real browser (Debian's Chromium, driven by Playwright): a person logs in, adds a model,
inspects it and watches the job go from queued to succeeded without reloading the page."""

from __future__ import annotations

import re
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page()
        yield page
        browser.close()


def test_a_person_inspects_a_model_and_watches_the_job_finish(live_server, worker, owner, page):
    # (page comes last: its event loop must start after the database fixtures ran)
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", "owner-pass-123")
    page.click("button.primary")
    page.goto(f"{live_server.url}/architectures/new/")
    page.select_option("#id_zoo_name", "cnn")
    page.click("button[name=inspect]")
    page.wait_for_url(re.compile(r".*/jobs/\d+/$"))
    url = page.url
    # htmx polls the live part; the page itself is never reloaded.
    page.wait_for_selector(".badge-succeeded", timeout=120_000)
    assert page.url == url
    assert "14,378 parameters" in page.inner_text("#job-live")
    page.click("text=Open result")
    page.wait_for_selector("svg.graph")
    assert "95 neurons, 2,057 edges" in page.content()
