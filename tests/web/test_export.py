"""A job's metrics download as CSV and JSON (series, step, value, recorded_at), from the page
and from the API, for the job's owner only."""

from __future__ import annotations

import csv
import io

import pytest

from tests.factories import trained_job
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db

COLUMNS = ["series", "step", "value", "recorded_at"]


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_holds_every_point_with_its_series_step_value_and_time(owner):
    job = trained_job(owner, steps=40, eval_every=20, runs=("nino",), period=20)
    text = job.metrics_csv()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    rows = rows_of(text)
    assert len(rows) == 40 + 2 + 2  # every loss step, two evaluations, two jumps
    first_loss = next(r for r in rows if r["series"] == "nino:train_loss")
    assert first_loss["step"] == "1" and float(first_loss["value"]) > 2
    assert first_loss["recorded_at"].startswith(str(job.created_at.year))


def test_a_person_downloads_the_metrics_as_csv_from_the_job_page(browser, owner):
    job = trained_job(owner, steps=30, eval_every=10, runs=("nino",), period=10)
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/jobs/{job.pk}/metrics.csv"' in page
    assert f'href="/jobs/{job.pk}/metrics.json"' in page
    response = browser.get(f"/jobs/{job.pk}/metrics.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="job-{job.pk}-metrics.csv"' in response["Content-Disposition"]
    assert len(rows_of(response.content.decode())) == job.metrics.count()


def test_the_json_download_has_the_same_rows_and_no_nan(browser, owner):
    job = Job.objects.create(owner=owner, kind="train")
    job.record_metrics("train_loss", [(1, 2.0), (2, float("nan"))])
    body = browser.get(f"/jobs/{job.pk}/metrics.json").json()
    assert body["job"] == job.pk
    assert [(p["series"], p["step"], p["value"]) for p in body["points"]] == [
        ("train_loss", 1, 2.0), ("train_loss", 2, None),
    ]  # fmt: skip
    assert set(body["points"][0]) == set(COLUMNS)


def test_an_unknown_download_format_is_not_found(browser, owner):
    job = trained_job(owner, steps=10, eval_every=5, runs=("nino",), period=5)
    assert browser.get(f"/jobs/{job.pk}/metrics.xlsx").status_code == 404


def test_the_api_answers_every_point_as_csv_or_json(api, owner):
    job = trained_job(owner, steps=6000, eval_every=1000, runs=("nino",), period=1000)
    csv_rows = rows_of(api.get(f"/api/v1/jobs/{job.pk}/metrics/?format=csv").content.decode())
    assert len(csv_rows) == job.metrics.count() > 5000  # never thinned, unlike ?max_points
    suffix = api.get(f"/api/v1/jobs/{job.pk}/metrics.csv")
    assert suffix.status_code == 200 and suffix["Content-Type"].startswith("text/csv")
    points = api.get(f"/api/v1/jobs/{job.pk}/points/").json()["points"]
    assert len(points) == len(csv_rows) and set(points[0]) == set(COLUMNS)
    points_csv = api.get(f"/api/v1/jobs/{job.pk}/points/?format=csv").content.decode()
    assert points_csv.splitlines()[0] == ",".join(COLUMNS)
    # The JSON metrics endpoint keeps its shape.
    assert "series" in api.get(f"/api/v1/jobs/{job.pk}/metrics/").json()


def test_an_outsider_cannot_download_someone_elses_metrics(outsider_browser, outsider_api, owner):
    job = trained_job(owner, steps=10, eval_every=5, runs=("nino",), period=5)
    for fmt in ("csv", "json"):
        assert outsider_browser.get(f"/jobs/{job.pk}/metrics.{fmt}").status_code == 404
    assert outsider_api.get(f"/api/v1/jobs/{job.pk}/metrics/?format=csv").status_code == 404
    assert outsider_api.get(f"/api/v1/jobs/{job.pk}/points/").status_code == 404


def test_a_diverged_value_comes_back_from_the_api_as_null(api, owner):
    job = Job.objects.create(owner=owner, kind="train")
    job.record_metrics("train_loss", [(1, 2.0), (2, float("inf"))])
    assert api.get(f"/api/v1/jobs/{job.pk}/metrics/").json()["series"]["train_loss"] == [
        [1, 2.0], [2, None],
    ]  # fmt: skip
