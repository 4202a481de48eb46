"""The dashboard finds runs: filters (status, kind, model, tag), search, pages, failure reasons,
all held in the URL, at a constant number of queries, and only ever among one's own jobs."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from tests.factories import queued_job, zoo_architecture
from tests.web.test_query_counts import DASHBOARD_MAX, _count, _fill
from webapp.jobs.filters import PAGE_SIZE
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def _row_ids(html: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'<tr id="job-row-(\d+)"', html)}


@pytest.fixture
def runs(owner):
    """Five jobs of the owner: two models, three kinds, four statuses, names, tags, notes."""
    mlp = zoo_architecture(owner, "mlp")
    cnn = zoo_architecture(owner, "cnn")
    cnn.set_labels(tags="vision")
    now = timezone.now()

    def job(kind, architecture, status, **labels):
        created = Job.objects.create(
            owner=owner, kind=kind, architecture=architecture, status=status,
            started_at=now, message=labels.pop("message", ""),
        )  # fmt: skip
        created.set_labels(**labels)
        return created

    return {
        "sweep": job("train", mlp, "succeeded", name="lr sweep 3e-4", tags="sweep"),
        "broken": job("train", cnn, "failed", name="cnn try", notes="forgot the normalisation"),
        "look": job("inspect", mlp, "succeeded", message="Graph of 12 nodes"),
        "guess": job("predict", cnn, "running", tags="ghn, sweep"),
        "waiting": job("inspect", cnn, "queued"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=succeeded", {"sweep", "look"}),
        ("kind=inspect", {"look", "waiting"}),
        ("status=succeeded&kind=train", {"sweep"}),
        ("tag=sweep", {"sweep", "guess"}),
        ("tag=SWEEP", {"sweep", "guess"}),
        ("tag=vision", {"broken", "guess", "waiting"}),  # the model's tag finds its jobs
        ("q=sweep", {"sweep", "guess"}),  # job name, and tag
        ("q=normalisation", {"broken"}),  # notes
        ("q=12+nodes", {"look"}),  # message
        ("q=cnn", {"broken", "guess", "waiting"}),  # model name
        ("status=bogus", {"sweep", "broken", "look", "guess", "waiting"}),  # ignored, not a 500
    ],
)
def test_a_person_narrows_the_dashboard_by_filters_and_search(browser, runs, query, expected):
    html = browser.get(f"/?{query}").content.decode()
    assert _row_ids(html) == {runs[name].pk for name in expected}


def test_the_model_filter_and_a_search_by_id_find_the_right_jobs(browser, runs):
    cnn = runs["broken"].architecture
    html = browser.get(f"/?model={cnn.pk}").content.decode()
    assert _row_ids(html) == {runs[n].pk for n in ("broken", "guess", "waiting")}
    html = browser.get(f"/?q=%23{runs['look'].pk}").content.decode()
    assert runs["look"].pk in _row_ids(html)


def test_the_filter_state_lives_in_the_url_and_the_form_shows_it(browser, runs):
    html = browser.get("/?status=failed&kind=train&q=cnn&tag=vision").content.decode()
    assert '<option value="failed" selected>' in html
    assert '<option value="train" selected>' in html
    assert 'name="q" value="cnn"' in html and 'value="vision"' in html
    assert 'method="get"' in html and 'id="clear-filters"' in html
    assert "1 job matching" in html


def test_no_match_says_so_and_offers_the_way_back(browser, runs):
    html = browser.get("/?q=nothing-like-this").content.decode()
    assert 'id="no-match"' in html and "Show all jobs" in html


def test_the_filter_form_gets_only_the_table_through_htmx(browser, runs):
    response = browser.get("/?status=running&kind=&q=", HTTP_HX_REQUEST="true",
                           HTTP_HX_TARGET="jobs-results")  # fmt: skip
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<div id="jobs-results">')
    assert _row_ids(html) == {runs["guess"].pk}
    assert response.headers["HX-Push-Url"] == "/?status=running"  # no empty fields
    # A history restore (back button after a cache miss) needs the whole page.
    restored = browser.get("/?status=running", HTTP_HX_REQUEST="true",
                           HTTP_HX_TARGET="jobs-results", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in restored.content.decode()  # fmt: skip


def test_a_failed_row_shows_the_first_line_of_its_error_and_more_on_hover(browser, owner):
    job = queued_job(owner)
    job.fail("\nThe model expects 3 channels; Fashion-MNIST has 1.\nTraceback (most recent …)\n")
    html = browser.get("/").content.decode()
    assert '<small class="failure" title="' in html
    assert ">The model expects 3 channels; Fashion-MNIST has 1.</small>" in html
    assert "Traceback (most recent …)" in html  # in the title: full on hover


def test_a_long_error_is_cut_for_the_hover_and_the_page_keeps_all_of_it(browser, owner):
    job = queued_job(owner)
    job.fail("first line\n" + "x" * 5000)
    html = browser.get("/").content.decode()
    title = re.search(r'class="failure" title="([^"]*)"', html).group(1)
    assert title.endswith("…") and len(title) < 1100
    assert "x" * 5000 in browser.get(f"/jobs/{job.pk}/").content.decode()


def test_the_dashboard_pages_through_many_jobs_keeping_the_filters(browser, owner):
    architecture = zoo_architecture(owner)
    Job.objects.bulk_create(
        Job(owner=owner, kind="inspect", architecture=architecture, status="failed")
        for _ in range(PAGE_SIZE + 5)
    )
    queued_job(owner)  # not failed: filtered out
    first = browser.get("/?status=failed").content.decode()
    assert len(_row_ids(first)) == PAGE_SIZE
    assert f"1–{PAGE_SIZE} of {PAGE_SIZE + 5} jobs matching" in first
    assert "Page 1 of 2" in first and 'href="?status=failed&amp;page=2"' in first
    second = browser.get("/?status=failed&page=2").content.decode()
    assert len(_row_ids(second)) == 5 and _row_ids(first).isdisjoint(_row_ids(second))
    assert 'href="?status=failed"' in second  # back to page 1, still filtered
    past = browser.get("/?status=failed&page=9").content.decode()
    assert "past the last one (2)" in past


def test_filtered_and_searched_pages_cost_the_same_queries_for_10_and_100_jobs(
    browser, owner, django_assert_max_num_queries
):
    architecture = zoo_architecture(owner)
    _fill(owner, 10)
    urls = ["/?status=failed&kind=inspect", "/?q=step&tag=x", f"/?model={architecture.pk}",
            "/?q=%2312"]  # fmt: skip
    few = [_count(django_assert_max_num_queries, DASHBOARD_MAX, lambda u=u: browser.get(u))
           for u in urls]  # fmt: skip
    _fill(owner, 90)
    many = [_count(django_assert_max_num_queries, DASHBOARD_MAX, lambda u=u: browser.get(u))
            for u in urls]  # fmt: skip
    assert many == few
    pages = [_count(django_assert_max_num_queries, DASHBOARD_MAX, lambda p=p: browser.get(p))
             for p in ("/?page=2", "/?page=4")]  # fmt: skip
    assert pages[0] == pages[1]

    def partial():
        return browser.get("/?status=failed", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="jobs-results")

    assert _count(django_assert_max_num_queries, DASHBOARD_MAX - 2, partial) <= DASHBOARD_MAX - 2


def test_an_outsider_finds_none_of_my_jobs_whatever_the_filters(outsider_browser, runs):
    sweep = runs["sweep"]
    for query in ("", "?tag=sweep", f"?q=%23{sweep.pk}", f"?model={sweep.architecture_id}",
                  "?q=lr+sweep"):  # fmt: skip
        html = outsider_browser.get(f"/{query}").content.decode()
        assert _row_ids(html) == set() and "lr sweep 3e-4" not in html
    choices = outsider_browser.get("/").context["filters"].fields["model"].choices
    assert choices == [("", "Any model")]


def test_each_row_can_be_ticked_for_the_comparison_page(browser, runs):
    html = browser.get("/").content.decode()
    assert '<form id="compare-form" method="get" action="/jobs/compare/"' in html
    pk = runs["sweep"].pk
    assert (
        f'<input type="checkbox" id="select-{pk}" name="ids" value="{pk}" form="compare-form"'
        in html
    )
    assert "js/runs/dashboard.js" in html


def test_a_row_shows_the_jobs_name_and_tags(browser, runs):
    html = browser.get("/").content.decode()
    assert 'class="job-name"' in html and "lr sweep 3e-4" in html
    assert '<a class="chip tag" href="/?tag=ghn">ghn</a>' in html
