"""The job page shows what was run, where a queued job stands, how fast a running one goes,
and feeds its charts from a JSON endpoint that answers only the new points on each poll."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import queued_job, trained_job, zoo_architecture
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, MetricPoint

pytestmark = pytest.mark.django_db


def train_job(owner, **fields) -> Job:
    return Job.objects.create(
        owner=owner, kind="train", architecture=zoo_architecture(owner), **fields
    )


def test_a_person_sees_every_parameter_the_job_ran_with_and_links_to_its_model(browser, owner):
    job = trained_job(owner, parameters={"lr": 0.0123, "seed": 7})
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert "What was run" in page
    for text in ("fashion_mnist (built-in)", "0.0123", "adamw", "nino", "128", "Period"):
        assert text in page
    assert f'href="{job.architecture.get_absolute_url()}"' in page


def test_an_uploaded_data_set_is_linked_from_the_job_page(browser, owner):
    dataset = Dataset.objects.create(
        owner=owner, name="my-digits.npz", format="npz", file="datasets/x.npz", file_bytes=1,
        sha256="0" * 64,
    )  # fmt: skip
    job = train_job(owner, parameters={"dataset_id": dataset.pk, "steps": 10})
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert f'<a href="{dataset.get_absolute_url()}">my-digits.npz</a>' in page


def test_a_queued_job_counts_the_active_jobs_of_its_queue_created_before_it(owner, outsider):
    train_job(outsider, status=Job.Status.RUNNING)  # someone else's, same (gpu) queue: counts
    train_job(owner)  # queued before ours: counts
    train_job(owner, status=Job.Status.SUCCEEDED)  # ended: does not count
    queued_job(owner)  # an inspect job, on the cpu queue: does not count
    mine = train_job(owner)
    train_job(owner)  # created after ours: does not count
    assert mine.queue == "gpu"
    assert mine.queue_position() == 3
    mine.claim("w")
    assert mine.queue_position() is None


def test_the_job_page_says_which_place_in_the_queue_a_job_has(browser, owner):
    train_job(owner)
    mine = train_job(owner)
    page = browser.get(f"/jobs/{mine.pk}/").content.decode()
    assert "<strong>2nd</strong> in the gpu queue" in page and "(1 ahead)" in page


def test_a_running_job_shows_its_steps_per_second_and_eta(browser, owner):
    job = train_job(owner, parameters={"steps": 1000})
    job.claim("gpu-worker-1")
    Job.objects.filter(pk=job.pk).update(
        started_at=timezone.now() - timedelta(seconds=100), progress=0.25
    )
    job.record_metrics("nino:train_loss", [(s, 1.0) for s in range(1, 101)])
    start = timezone.now() - timedelta(seconds=10)
    for point in MetricPoint.objects.filter(job=job):
        # 100 steps recorded over 10 seconds: 9.9 steps/s between the first and last point
        MetricPoint.objects.filter(pk=point.pk).update(
            recorded_at=start + timedelta(seconds=(point.step - 1) / 10)
        )
    job.refresh_from_db()
    speed = job.speed()
    assert speed["steps_per_s"] == pytest.approx(10.0, rel=0.01)
    assert speed["eta_s"] == pytest.approx(300, rel=0.05)  # 100 s for a quarter: 300 s left
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert "10.0 steps/s" in page and "about 5 min" in page and "gpu-worker-1" in page


def test_the_charts_sit_in_a_part_htmx_keeps_across_polls(browser, owner):
    job = queued_job(owner)
    partial = browser.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="job-charts"' in partial and 'hx-preserve="true"' in partial
    assert f'data-src="/jobs/{job.pk}/charts.json"' in partial
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert "uPlot.iife.min.js" in page and "js/charts/charts.js" in page


def test_the_chart_data_holds_every_series_and_then_only_new_points(browser, owner):
    job = train_job(owner, status=Job.Status.RUNNING)
    job.record_metrics("nino:train_loss", [(1, 2.0), (2, 1.5)])
    job.record_metrics("nino:nowcast", [(2, 1.0)])
    body = browser.get(f"/jobs/{job.pk}/charts.json").json()
    assert body["active"] is True and body["incremental"] is False
    loss = next(s for s in body["series"] if s["name"] == "nino:train_loss")
    assert loss["steps"] == [1, 2] and loss["values"] == [2.0, 1.5] and loss["factor"] == 1
    assert loss["run"] == "nino" and loss["metric"] == "train_loss" and None not in loss["times"]
    assert {s["metric"] for s in body["series"]} == {"train_loss", "nowcast"}
    assert "published behaviour" in body["note"]

    job.record_metrics("nino:train_loss", [(3, 1.2)])
    later = browser.get(f"/jobs/{job.pk}/charts.json", {"after": body["cursor"]}).json()
    assert later["incremental"] is True
    assert [(s["name"], s["steps"]) for s in later["series"]] == [("nino:train_loss", [3])]


def test_a_diverged_value_reaches_the_chart_as_a_gap(browser, owner):
    job = train_job(owner)
    job.record_metrics("train_loss", [(1, 2.0), (2, float("nan")), (3, float("inf"))])
    body = browser.get(f"/jobs/{job.pk}/charts.json").json()
    assert body["series"][0]["values"] == [2.0, None, None]


def test_the_page_draws_a_thinned_series_with_its_factor_but_every_point_is_kept(browser, owner):
    job = train_job(owner)
    job.record_metrics("train_loss", [(s, 1.0 / s) for s in range(1, 25_001)])
    loss = browser.get(f"/jobs/{job.pk}/charts.json").json()["series"][0]
    assert loss["factor"] == 2 and loss["points"] == 25_000
    assert loss["steps"][-1] == 25_000  # the latest point is always drawn
    assert MetricPoint.objects.filter(job=job).count() == 25_000


def test_an_outsider_gets_404_for_the_chart_data(outsider_browser, owner):
    job = trained_job(owner)
    assert outsider_browser.get(f"/jobs/{job.pk}/charts.json").status_code == 404


def test_runs_get_stable_colours_with_the_plain_baseline_red(browser, owner):
    job = trained_job(owner)
    body = browser.get(f"/jobs/{job.pk}/charts.json").json()
    colours = {s["run"]: s["colour"] for s in body["series"]}
    assert colours["plain"] == "#dc2626" and colours["nino"] == "#2563eb"


def test_the_plain_baseline_is_dashed_so_the_identical_nino_line_shows_before_the_first_jump(
    browser, owner
):
    job = trained_job(owner)
    series = browser.get(f"/jobs/{job.pk}/charts.json").json()["series"]
    dashed = {s["run"]: s["dash"] for s in series}
    assert dashed["plain"] is True and dashed["nino"] is False
