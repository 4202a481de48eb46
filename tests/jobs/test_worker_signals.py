"""Crashes and hard time limits reported by Celery end the job as failed, with a reason."""

from __future__ import annotations

import pytest
from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded

from tests.factories import queued_job
from webapp.jobs.models import Job
from workers.tasks.signals import fail_job_on_task_failure, fail_orphaned_jobs

pytestmark = pytest.mark.django_db


class FakeSender:
    name = "weightspace.inspect"


class FakeWorker:
    hostname = "celery@gpu-1"


def test_a_lost_worker_process_fails_the_running_job(owner):
    job = queued_job(owner)
    job.claim("celery@gpu-1")
    error = WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL).")
    fail_job_on_task_failure(sender=FakeSender(), exception=error, args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "died" in job.error and "SIGKILL" in job.error


def test_a_hard_time_limit_fails_the_running_job(owner):
    job = queued_job(owner)
    job.claim("celery@gpu-1")
    fail_job_on_task_failure(sender=FakeSender(), exception=TimeLimitExceeded(60), args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "time limit" in job.error


def test_a_restarted_worker_fails_what_it_was_running(owner):
    job = queued_job(owner)
    job.claim("celery@gpu-1")
    fail_orphaned_jobs(sender=FakeWorker())
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "restarted" in job.error


def test_failures_of_other_tasks_are_ignored(owner):
    job = queued_job(owner)
    job.claim("w")

    class Other:
        name = "celery.ping"

    fail_job_on_task_failure(sender=Other(), exception=RuntimeError("x"), args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
