"""A job that crashes tells its owner what happened in a sentence; the traceback, with the
worker's file paths, stays in the worker's log."""

from __future__ import annotations

import logging

import pytest

from tests.factories import queued_job, zoo_architecture
from webapp.jobs.models import Job
from workers.tasks.policy import run_job


def crashing_body(job, progress):
    open("/srv/weightspace/var/secret/config.yaml")  # noqa: SIM115 - the crash under test


@pytest.mark.django_db
def test_a_crash_shows_a_sentence_without_traceback_or_server_paths(owner, caplog):
    job = queued_job(owner, zoo_architecture(owner, "cnn"))
    with caplog.at_level(logging.ERROR, logger="workers.tasks.policy"):
        run_job(job.pk, crashing_body, worker="w")
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "FileNotFoundError" in job.error and "config.yaml" in job.error
    assert "Traceback" not in job.error and "/srv/weightspace" not in job.error
    assert "worker's log" in job.error
    assert "Traceback" in caplog.text and "/srv/weightspace/var/secret" in caplog.text
