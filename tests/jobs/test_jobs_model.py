"""The job status machine, metrics and artifacts, as the workers and pages rely on them."""

from __future__ import annotations

import pytest

from tests.factories import queued_job
from webapp.jobs.models import Artifact, Job, MetricPoint, downsample

pytestmark = pytest.mark.django_db


def test_a_new_job_is_queued_and_active(owner):
    job = queued_job(owner)
    assert job.status == Job.Status.QUEUED
    assert job.is_active and not job.is_terminal


def test_a_job_can_be_claimed_only_once(owner):
    job = queued_job(owner)
    assert job.claim("worker-a") is True
    assert job.status == Job.Status.RUNNING and job.worker == "worker-a"
    assert job.started_at is not None
    assert Job.objects.get(pk=job.pk).claim("worker-b") is False
    assert Job.objects.get(pk=job.pk).worker == "worker-a"


def test_a_finished_job_never_moves_again(owner):
    job = queued_job(owner)
    job.claim("w")
    assert job.succeed("done", {"n": 1})
    assert job.progress == 1.0 and job.finished_at is not None
    assert job.fail("late failure") is False
    assert job.update_status(Job.Status.RUNNING) is False
    assert Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED


def test_cancelling_a_queued_job_ends_it_at_once(owner):
    job = queued_job(owner)
    assert job.request_cancel()
    assert job.status == Job.Status.CANCELLED
    assert job.claim("w") is False  # a late message for it does nothing


def test_cancelling_a_running_job_asks_the_worker_to_stop(owner):
    job = queued_job(owner)
    job.claim("w")
    assert job.request_cancel()
    assert job.status == Job.Status.RUNNING and job.cancel_requested
    assert job.set_progress(0.5, "half way") is True  # the worker learns of it here


def test_cancelling_a_finished_job_is_refused(owner):
    job = queued_job(owner)
    job.claim("w")
    job.fail("boom")
    assert job.request_cancel() is False


def test_only_failed_or_cancelled_jobs_can_be_retried(owner, django_capture_on_commit_callbacks):
    job = queued_job(owner)
    with pytest.raises(ValueError):
        job.retry()
    job.claim("w")
    job.fail("boom")
    with django_capture_on_commit_callbacks() as callbacks:
        again = job.retry()
    assert again.status == Job.Status.QUEUED and again.retry_of == job
    assert again.architecture == job.architecture
    assert len(callbacks) == 1


def test_progress_is_clamped_to_the_unit_interval(owner):
    job = queued_job(owner)
    job.claim("w")
    job.set_progress(7.0)
    assert job.progress == 1.0
    job.set_progress(-1)
    assert job.progress == 0.0


def test_submit_sends_only_the_primary_key_after_commit(
    owner, monkeypatch, django_capture_on_commit_callbacks
):
    from tests.factories import zoo_architecture
    from workers.celery import app

    sent = []
    monkeypatch.setattr(
        app, "send_task", lambda name, args, queue: sent.append((name, args, queue))
    )
    architecture = zoo_architecture(owner)
    with django_capture_on_commit_callbacks(execute=True):
        job = Job.submit(owner=owner, kind="inspect", architecture=architecture)
        assert sent == []  # nothing is sent before the row is committed
    assert sent == [("weightspace.inspect", [job.pk], "cpu")]


def test_metric_points_are_overwritten_not_duplicated(owner):
    job = queued_job(owner)
    job.record_metrics("train_loss", [(0, 2.3), (10, 1.9)])
    job.record_metrics("train_loss", [(10, 1.8), (20, 1.5)])  # a re-delivered task
    assert MetricPoint.objects.filter(job=job).count() == 3
    assert job.metric_series() == {"train_loss": [[0, 2.3], [10, 1.8], [20, 1.5]]}


def test_downsampling_keeps_the_ends_and_the_count():
    points = [[i, float(i)] for i in range(1000)]
    thin = downsample(points, 50)
    assert len(thin) == 50 and thin[0] == [0, 0.0] and thin[-1] == [999, 999.0]
    assert downsample(points[:10], 50) == points[:10]


def test_saving_an_artifact_twice_replaces_it(owner):
    job = queued_job(owner)
    first = job.save_artifact("graph", "graph.json", b'{"a": 1}', "application/json")
    second = job.save_artifact("graph", "graph.json", b'{"a": 2}', "application/json")
    assert Artifact.objects.filter(job=job).count() == 1
    assert second.read_json() == {"a": 2}
    assert second.bytes == 8 and len(second.sha256) == 64
    assert not first.file.storage.exists(first.file.name) or first.file.name == second.file.name


def test_orphaned_running_jobs_of_a_restarted_worker_fail(owner):
    mine, other = queued_job(owner), queued_job(owner)
    mine.claim("celery@a")
    other.claim("celery@b")
    assert Job.fail_orphans("celery@a", "restarted") == 1
    mine.refresh_from_db()
    other.refresh_from_db()
    assert mine.status == Job.Status.FAILED and mine.error == "restarted"
    assert other.status == Job.Status.RUNNING
