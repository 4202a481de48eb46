"""A person logs in through the form, adds a model, inspects it and watches the job go from
queued to succeeded without reloading the page (a real worker process does the work)."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import screenshot

pytestmark = pytest.mark.e2e


def test_a_person_inspects_a_model_and_watches_the_job_finish(live_server, worker, owner, chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
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
        page.wait_for_selector(".gv[data-state=ready] svg.gv-svg")  # the graph viewer drew
        assert "95 neurons, 2,057 edges" in page.content()
        screenshot(page, "first_session_result")
    finally:
        context.close()
