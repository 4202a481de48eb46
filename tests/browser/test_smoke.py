"""The signed-in tab reaches the dashboard (the browser fixtures work)."""

from tests.browser.conftest import screenshot


def test_a_signed_in_owner_sees_the_dashboard(page):
    page.goto(page.base + "/")
    assert page.url.rstrip("/") == page.base
    assert page.locator("nav").count() >= 1
    assert screenshot(page, "dashboard").exists()
