"""Runs people can find, in a real browser: filters and search swap the table in place and
land in the URL, rows are ticked for comparison, labels are edited inline, and a delete asks
first. Screenshots: runs_dashboard, runs_filtered, runs_labels_form, runs_labels_saved,
runs_delete_confirm."""

from __future__ import annotations

import re

from django.utils import timezone

from tests.browser.conftest import screenshot
from tests.factories import zoo_architecture
from webapp.architectures.models import Architecture
from webapp.jobs.models import Job


def _runs(owner) -> dict[str, Job]:
    mlp = zoo_architecture(owner, "mlp")
    cnn = zoo_architecture(owner, "cnn")
    twin = zoo_architecture(owner, "mlp", {"hidden": [16]})
    Architecture.objects.filter(pk__in=[cnn.pk, twin.pk]).update(name="model.pt2")
    mlp.set_labels(tags="zoo")
    now = timezone.now()

    def job(kind, architecture, status, **labels):
        made = Job.objects.create(
            owner=owner, kind=kind, architecture=architecture, status=status, started_at=now,
            finished_at=None if status in ("queued", "running") else now,
            message=labels.pop("message", "Done"), progress=labels.pop("progress", 1.0),
            error=labels.pop("error", ""),
        )  # fmt: skip
        made.set_labels(**labels)
        return made

    return {
        "look": job("inspect", mlp, "succeeded", message="Graph of 12 nodes"),
        "sweep": job("train", mlp, "succeeded", name="lr sweep 3e-4", tags="sweep, adam"),
        "broken": job(
            "train", cnn, "failed", name="cnn on fashion-mnist", message="Failed",
            error="The model expects 3 input channels; fashion_mnist images have 1.\n"
                  "Traceback (most recent call last): …",
        ),  # fmt: skip
        "nino": job("train", twin, "running", name="nino 1k steps", tags="sweep, nino",
                    message="Step 420 of 1,000", progress=0.42),  # fmt: skip
        "guess": job("predict", twin, "succeeded", tags="ghn"),
    }


def _rows(page) -> int:
    return page.locator("#jobs tbody tr").count()


def test_a_person_filters_and_searches_the_dashboard_without_a_reload(page, owner):
    runs = _runs(owner)
    page.goto(page.base + "/")
    assert _rows(page) == 5
    failure = page.locator(f"#job-row-{runs['broken'].pk} .failure")
    assert failure.inner_text().startswith("The model expects 3 input channels")
    assert "Traceback" in failure.get_attribute("title")
    # The two models both called model.pt2 show the start of their hashes.
    assert page.locator(f"#job-row-{runs['nino'].pk} .short-sha").count() == 1
    screenshot(page, "runs_dashboard")

    page.evaluate("window.__marker = 'same page'")  # gone if the page reloads
    page.fill('input[name="q"]', "sweep")
    page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 2")
    assert re.search(r"[?&]q=sweep", page.url)
    page.select_option('select[name="status"]', "running")
    page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 1")
    assert page.locator(f"#job-row-{runs['nino'].pk}").count() == 1
    assert "status=running" in page.url and page.evaluate("window.__marker") == "same page"
    assert "1 job matching" in page.locator("#results-line").inner_text()
    screenshot(page, "runs_filtered")

    # The URL is the view: opened afresh, it shows the same rows and the same form.
    shared = page.url
    page.goto(page.base + "/")
    page.goto(shared)
    assert _rows(page) == 1
    assert page.input_value('input[name="q"]') == "sweep"
    assert page.input_value('select[name="status"]') == "running"

    # A tag chip filters by that tag: the model's tag finds the jobs on it.
    page.goto(page.base + "/")
    page.locator("#models a.chip.tag", has_text="zoo").click()
    page.wait_for_url(re.compile(r"tag=zoo"))
    assert _rows(page) == 2


def test_ticked_rows_open_the_comparison_with_their_ids_in_the_url(page, owner):
    runs = _runs(owner)
    page.goto(page.base + "/")
    button = page.locator("#compare-button")
    assert button.is_disabled()
    page.check(f"#select-{runs['nino'].pk}")
    assert button.is_disabled()  # one job is no comparison
    page.check(f"#select-{runs['sweep'].pk}")
    assert button.inner_text() == "Compare selected (2)"
    # The running row re-renders itself every 2 s; the tick survives it.
    page.wait_for_timeout(2600)
    assert page.is_checked(f"#select-{runs['nino'].pk}")
    button.click()
    page.wait_for_url(re.compile(r"/jobs/compare/\?ids="))
    ids = page.url.split("ids=", 1)[1].split("&")[0].replace("%2C", ",")
    assert sorted(map(int, ids.split(","))) == sorted([runs["nino"].pk, runs["sweep"].pk])


def test_a_person_edits_a_jobs_name_tags_and_notes_inline(page, owner):
    runs = _runs(owner)
    job = runs["look"]
    page.goto(f"{page.base}/jobs/{job.pk}/")
    page.get_by_role("button", name="Edit name, tags, notes").click()
    page.fill('#labels input[name="name"]', "first look at the mlp")
    page.fill('#labels input[name="tags"]', "Baseline, mlp")
    page.fill('#labels textarea[name="notes"]', "Before the learning-rate sweep.")
    screenshot(page, "runs_labels_form")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("#labels .labels-name")
    assert page.locator("#labels .labels-name").inner_text() == "first look at the mlp"
    assert page.locator("#labels a.chip.tag").all_inner_texts() == ["baseline", "mlp"]
    screenshot(page, "runs_labels_saved")
    job.refresh_from_db()
    assert job.tags == ",baseline,mlp," and job.notes == "Before the learning-rate sweep."

    # A bad tag is refused in place, with the reason, and nothing changes.
    page.get_by_role("button", name="Edit name, tags, notes").click()
    page.fill('#labels input[name="tags"]', "fine n/a")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("#labels .errorlist")
    assert "'n/a' has characters" in page.locator("#labels .errorlist").inner_text()
    job.refresh_from_db()
    assert job.tags == ",baseline,mlp,"


def test_a_delete_asks_first_and_then_removes_the_row(page, owner):
    runs = _runs(owner)
    doomed = runs["broken"]
    page.goto(page.base + "/?kind=train")
    page.locator(f"#job-row-{doomed.pk} a.danger-link").click()
    page.wait_for_selector("#confirm-delete")
    assert f"#{doomed.pk}" in page.locator("h1").inner_text()
    screenshot(page, "runs_delete_confirm")
    assert Job.objects.filter(pk=doomed.pk).exists()  # opening the page deleted nothing
    page.click("#confirm-delete")
    page.wait_for_url(re.compile(r"/\?kind=train$"))
    assert page.locator(f"#job-row-{doomed.pk}").count() == 0
    assert "were deleted" in page.locator(".messages").inner_text()
    assert not Job.objects.filter(pk=doomed.pk).exists()

    # A running job is refused with the reason.
    page.goto(f"{page.base}/jobs/{runs['nino'].pk}/delete/")
    assert "cancel it first" in page.locator("#delete-refusal").inner_text()
    assert page.locator("#confirm-delete").count() == 0


def test_a_person_renames_and_tags_a_model_on_its_page(page, owner):
    architecture = zoo_architecture(owner, "mlp")
    page.goto(f"{page.base}/architectures/{architecture.pk}/")
    page.get_by_role("button", name="Edit name, tags, notes").click()
    page.fill('#labels input[name="name"]', "mlp for the sweep")
    page.fill('#labels input[name="tags"]', "zoo tiny")
    page.get_by_role("button", name="Save").click()
    # A new name reloads the page, so its heading and title say it too.
    page.wait_for_function("document.title.startsWith('mlp for the sweep')")
    assert page.locator("h1").first.inner_text() == "mlp for the sweep"
    assert page.locator("#labels a.chip.tag").all_inner_texts() == ["tiny", "zoo"]
    screenshot(page, "runs_model_labels")
