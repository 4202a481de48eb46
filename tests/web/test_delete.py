"""Deleting from the pages: a confirmation first (GET never deletes), active jobs refused with
the reason, the files gone with the rows, and nobody but the owner can do it."""

from __future__ import annotations

import pytest

from tests.conftest import stored_files, upload
from tests.factories import queued_job, zoo_architecture
from webapp.architectures.models import Architecture
from webapp.jobs.models import Artifact, Job, MetricPoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_job(owner) -> Job:
    """A succeeded job with a metric series and two stored artifacts."""
    job = queued_job(owner)
    job.claim("w")
    job.record_metrics("train_loss", [(0, 2.0), (1, 1.0)])
    job.save_artifact("graph", "graph.json", b"{}", "application/json")
    job.save_artifact("log", "log.txt", b"done", "text/plain")
    job.succeed()
    return job


def test_the_confirmation_page_says_what_goes_and_deletes_nothing(browser, finished_job):
    response = browser.get(f"/jobs/{finished_job.pk}/delete/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"Delete Inspect job #{finished_job.pk}?" in html
    assert "its 2 artifact files" in html and "its 2 metric points" in html
    assert 'id="confirm-delete"' in html
    assert 'method="post"' in html
    assert Job.objects.filter(pk=finished_job.pk).exists()


def test_the_owner_deletes_an_ended_job_and_its_files_and_metrics_go_too(
    browser, settings, finished_job, django_capture_on_commit_callbacks
):
    assert len(stored_files(settings.MEDIA_ROOT)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(f"/jobs/{finished_job.pk}/delete/", {"next": "/?status=succeeded"})
    assert response.status_code == 302 and response.url == "/?status=succeeded"
    assert not Job.objects.filter(pk=finished_job.pk).exists()
    assert not MetricPoint.objects.exists() and not Artifact.objects.exists()
    assert stored_files(settings.MEDIA_ROOT) == []
    dashboard = browser.get("/").content.decode()
    assert f"Job #{finished_job.pk} and its files were deleted." in dashboard
    # The model stays: deleting a run is not deleting what it ran on.
    assert Architecture.objects.filter(pk=finished_job.architecture_id).exists()


def test_a_delete_never_sends_the_person_to_another_site(browser, finished_job):
    response = browser.post(f"/jobs/{finished_job.pk}/delete/", {"next": "https://evil.example/"})
    assert response.status_code == 302 and response.url == "/"


def test_an_active_job_is_refused_with_a_sentence_and_kept(browser, owner):
    job = queued_job(owner)
    page = browser.get(f"/jobs/{job.pk}/delete/").content.decode()
    assert f"Job #{job.pk} is still queued; cancel it first" in page
    assert 'id="confirm-delete"' not in page
    response = browser.post(f"/jobs/{job.pk}/delete/", follow=True)
    assert "cancel it first" in response.content.decode()
    assert Job.objects.filter(pk=job.pk).exists()
    # Once cancelled, it can go.
    job.request_cancel()
    browser.post(f"/jobs/{job.pk}/delete/")
    assert not Job.objects.filter(pk=job.pk).exists()


def test_an_outsider_can_neither_see_the_confirmation_nor_delete(outsider_browser, finished_job):
    assert outsider_browser.get(f"/jobs/{finished_job.pk}/delete/").status_code == 404
    assert outsider_browser.post(f"/jobs/{finished_job.pk}/delete/").status_code == 404
    architecture = finished_job.architecture
    assert outsider_browser.get(f"/architectures/{architecture.pk}/delete/").status_code == 404
    assert outsider_browser.post(f"/architectures/{architecture.pk}/delete/").status_code == 404
    assert Job.objects.filter(pk=finished_job.pk).exists()
    assert Architecture.objects.filter(pk=architecture.pk).exists()


def test_the_dashboard_rows_and_the_pages_link_to_the_confirmation(browser, finished_job, owner):
    running = queued_job(owner)
    html = browser.get("/?kind=inspect").content.decode()
    assert f'href="/jobs/{finished_job.pk}/delete/?next=/%3Fkind%3Dinspect"' in html
    assert f'href="/jobs/{running.pk}/delete/' not in html  # active: no delete offered
    page = browser.get(f"/jobs/{finished_job.pk}/").content.decode()
    assert f'href="/jobs/{finished_job.pk}/delete/"' in page
    page = browser.get(f"/architectures/{finished_job.architecture_id}/").content.decode()
    assert f'href="/architectures/{finished_job.architecture_id}/delete/"' in page


def test_the_owner_deletes_an_uploaded_model_with_its_jobs_and_files(
    api, browser, owner, settings, django_capture_on_commit_callbacks
):
    settings.ALLOW_PYTHON_MODELS = True
    created = api.post(
        "/api/v1/architectures/", {"source": "python", "file": upload("net.py", b"X = 1\n")}
    ).json()
    job = Job.objects.create(owner=owner, kind="inspect", architecture_id=created["id"])
    job.claim("w")
    job.save_artifact("graph", "graph.json", b"{}", "application/json")
    job.succeed()
    assert len(stored_files(settings.MEDIA_ROOT)) == 2
    page = browser.get(f"/architectures/{created['id']}/delete/").content.decode()
    assert "its 1 job, with their metrics and artifacts" in page and "its uploaded file" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(f"/architectures/{created['id']}/delete/")
    assert response.status_code == 302 and response.url == "/"
    assert not Architecture.objects.filter(pk=created["id"]).exists()
    assert not Job.objects.filter(pk=job.pk).exists()
    assert stored_files(settings.MEDIA_ROOT) == []


def test_a_model_with_a_running_job_is_refused_on_the_page_and_in_the_api(api, browser, owner):
    architecture = zoo_architecture(owner)
    job = queued_job(owner, architecture)
    job.claim("w")
    page = browser.get(f"/architectures/{architecture.pk}/delete/").content.decode()
    assert "This model has jobs still running; cancel them first." in page
    browser.post(f"/architectures/{architecture.pk}/delete/")
    response = api.delete(f"/api/v1/architectures/{architecture.pk}/")
    assert response.status_code == 409 and "cancel them first" in response.json()["detail"]
    assert Architecture.objects.filter(pk=architecture.pk).exists()


def test_the_api_deletes_an_ended_job_and_refuses_an_active_one(api, outsider_api, owner,
                                                                finished_job):  # fmt: skip
    assert outsider_api.delete(f"/api/v1/jobs/{finished_job.pk}/").status_code == 404
    assert api.delete(f"/api/v1/jobs/{finished_job.pk}/").status_code == 204
    assert not Job.objects.filter(pk=finished_job.pk).exists()
    active = queued_job(owner)
    response = api.delete(f"/api/v1/jobs/{active.pk}/")
    assert response.status_code == 409 and "cancel it first" in response.json()["detail"]
