"""Lists and pages cost a constant number of queries, however many rows they show.

Each test fills the owner's account with ``n`` rows of everything a page lists (jobs in every
status, some with artifacts, retries and checkpoints; architectures, some inspected), then
asserts a small fixed bound with ``django_assert_max_num_queries`` — and the same bound for 10
and for 100 rows, so a per-row query anywhere fails it. Wall-clock time is measured by
``bench/load.py``, never asserted here.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from webapp.architectures.models import Architecture
from webapp.checkpoints.models import Checkpoint
from webapp.datasets.models import Dataset
from webapp.jobs.models import Artifact, Job

pytestmark = pytest.mark.django_db

STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]


def _fill(owner, n: int) -> list[Job]:
    """``n`` architectures with ``n`` jobs (mixed statuses, every third with two artifacts,
    every fifth a retry, succeeded inspections), ``n`` checkpoints and ``n`` data sets."""
    start = Architecture.objects.filter(owner=owner).count()
    architectures = Architecture.objects.bulk_create(
        Architecture(
            owner=owner,
            name=f"mlp-{start + i}",
            source="zoo",
            zoo_name="mlp",
            zoo_args={"hidden": [8 + start + i]},
            sha256=f"a{start + i:063d}",
            num_params=1000 + i if i % 2 else None,
        )  # fmt: skip
        for i in range(n)
    )
    now = timezone.now()
    jobs = Job.objects.bulk_create(
        Job(
            owner=owner,
            kind="inspect",
            architecture=architectures[i],
            status=STATUSES[i % len(STATUSES)],
            progress=(i % 10) / 10,
            message=f"step {i} of a long message " * 3,
            started_at=now,
            finished_at=now,
            worker="w1",
        )  # fmt: skip
        for i in range(n)
    )
    for i, job in enumerate(jobs):
        if i % 5 == 4:
            job.retry_of = jobs[i - 1]
            job.save(update_fields=["retry_of"])
    Artifact.objects.bulk_create(
        Artifact(
            job=job,
            kind="graph",
            name=name,
            file=f"artifacts/{job.pk}/{name}",
            bytes=1234,
            sha256="f" * 64,
            content_type="application/json",
        )  # fmt: skip
        for job in jobs[::3]
        for name in ("arch_graph.json", "tensors.json")
    )
    Checkpoint.objects.bulk_create(
        Checkpoint(
            owner=owner,
            name=f"ck-{start + i}",
            file=f"checkpoints/{i}.safetensors",
            format="safetensors",
            num_tensors=4,
            file_bytes=4096,
            sha256=f"c{start + i:063d}",
            architecture=architectures[i],
        )  # fmt: skip
        for i in range(n)
    )
    Dataset.objects.bulk_create(
        Dataset(
            owner=owner,
            name=f"ds-{start + i}",
            format="npz",
            file=f"datasets/{i}.npz",
            file_bytes=2048,
            sha256=f"d{start + i:063d}",
        )  # fmt: skip
        for i in range(n)
    )
    return jobs


def _count(django_assert_max_num_queries, bound: int, fetch) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with django_assert_max_num_queries(bound):
        with CaptureQueriesContext(connection) as queries:
            response = fetch()
    assert response.status_code == 200
    return len(queries)


# Pages: session + user, then one query per list (jobs with their architecture joined,
# architectures, data sets, checkpoints). API: token, count, page (+ one for all the page's
# artifacts). Job page: the job with its architecture and retried job joined, metrics,
# artifacts. Architecture page: it, its latest inspection and that one's artifacts, its jobs,
# "any active job", and the forms' data set choices.
DASHBOARD_MAX = 6
JOB_LIST_MAX = 4
ARCHITECTURE_LIST_MAX = 3
DETAIL_MAX = 5
ARCHITECTURE_PAGE_MAX = 8


def test_the_dashboard_costs_the_same_queries_for_10_and_100_jobs(
    browser, owner, django_assert_max_num_queries
):
    _fill(owner, 10)
    few = _count(django_assert_max_num_queries, DASHBOARD_MAX, lambda: browser.get("/"))
    _fill(owner, 90)
    assert Job.objects.filter(owner=owner).count() == 100
    many = _count(django_assert_max_num_queries, DASHBOARD_MAX, lambda: browser.get("/"))
    assert many == few


def test_the_dashboard_still_shows_every_column(browser, owner):
    jobs = _fill(owner, 5)
    page = browser.get("/").content.decode()
    running = next(j for j in jobs if j.status == "running")
    done = next(j for j in jobs if j.status == "succeeded")
    assert f'id="job-row-{running.pk}" hx-get="/jobs/{running.pk}/row/"' in page
    assert f'id="job-row-{done.pk}">' in page  # no polling once ended
    assert f'<a href="/jobs/{done.pk}/">#{done.pk}</a>' in page
    assert f'<a href="/architectures/{done.architecture_id}/">{done.architecture.name}</a>' in page
    assert '<span class="badge badge-running">Running</span>' in page
    assert 'class="bar bar-running" style="width: 10%"' in page
    assert "ago</td>" in page and "Inspect" in page
    assert "1,001" in page and "not inspected" in page  # models: intcomma / none yet
    assert "zoo: mlp(hidden=[9])" in page
    assert "ds-0" in page and "2.0\xa0KB" in page and "ck-0" in page


def test_the_job_list_api_is_constant(api, owner, django_assert_max_num_queries):
    _fill(owner, 10)
    few = _count(django_assert_max_num_queries, JOB_LIST_MAX, lambda: api.get("/api/v1/jobs/"))
    _fill(owner, 90)

    def fetch():
        return api.get("/api/v1/jobs/?page_size=100")

    many = _count(django_assert_max_num_queries, JOB_LIST_MAX, fetch)
    assert many == few
    body = fetch().json()
    assert len(body["results"]) == 100
    assert sum(len(row["artifacts"]) for row in body["results"]) > 0


def test_the_architecture_list_api_and_detail_are_constant(
    api, owner, django_assert_max_num_queries
):
    _fill(owner, 10)
    few = _count(
        django_assert_max_num_queries,
        ARCHITECTURE_LIST_MAX,
        lambda: api.get("/api/v1/architectures/"),
    )
    _fill(owner, 90)
    many = _count(
        django_assert_max_num_queries,
        ARCHITECTURE_LIST_MAX,
        lambda: api.get("/api/v1/architectures/?page_size=100"),
    )
    assert many == few
    architecture = Architecture.objects.filter(owner=owner).first()
    _count(
        django_assert_max_num_queries,
        ARCHITECTURE_LIST_MAX,
        lambda: api.get(f"/api/v1/architectures/{architecture.pk}/"),
    )


def test_the_architecture_page_is_constant_in_its_jobs(
    browser, owner, django_assert_max_num_queries
):
    _fill(owner, 3)
    architecture = Architecture.objects.filter(owner=owner).first()

    def fetch():
        return browser.get(f"/architectures/{architecture.pk}/")

    few = _count(django_assert_max_num_queries, ARCHITECTURE_PAGE_MAX, fetch)
    now = timezone.now()
    Job.objects.bulk_create(
        Job(owner=owner, kind="inspect", architecture=architecture, status=s, started_at=now)
        for s in STATUSES * 6
    )
    many = _count(django_assert_max_num_queries, ARCHITECTURE_PAGE_MAX, fetch)
    assert many == few


def test_the_job_page_is_constant_in_its_artifacts(browser, owner, django_assert_max_num_queries):
    jobs = _fill(owner, 10)
    job = next(j for j in jobs if j.retry_of_id)
    job.record_metrics("train_loss", [(i, 1.0 / (i + 1)) for i in range(50)])

    def fetch():
        return browser.get(f"/jobs/{job.pk}/")

    few = _count(django_assert_max_num_queries, DETAIL_MAX, fetch)
    Artifact.objects.bulk_create(
        Artifact(
            job=job,
            kind="log",
            name=f"log-{i}.txt",
            file=f"artifacts/{i}",
            bytes=10,
            sha256="e" * 64,
        )  # fmt: skip
        for i in range(30)
    )
    many = _count(django_assert_max_num_queries, DETAIL_MAX, fetch)
    assert many == few
    page = fetch().content.decode()
    assert f'href="/jobs/{job.retry_of_id}/">#{job.retry_of_id}</a>' in page
    assert "log-29.txt" in page
    partial = _count(
        django_assert_max_num_queries, DETAIL_MAX, lambda: browser.get(
            f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    )  # fmt: skip
    assert partial <= many
