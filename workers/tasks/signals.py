"""Worker signals that keep jobs from being left ``running`` forever."""

from __future__ import annotations

import logging
from typing import Any

from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure, worker_ready

log = logging.getLogger(__name__)


def failure_reason(exception: BaseException) -> str:
    """A sentence for the job page about why the worker gave up on a job."""
    if isinstance(exception, TimeLimitExceeded):
        return f"The job ran past its hard time limit ({exception}) and was stopped."
    if isinstance(exception, WorkerLostError):
        return f"The worker process running this job died (killed, or out of memory): {exception}"
    return f"{type(exception).__name__}: {exception}"


@task_failure.connect
def fail_job_on_task_failure(
    sender: Any = None, exception: BaseException | None = None, args: Any = None, **_: Any
) -> None:
    """Hard time limits and lost pool processes are reported here, in the parent process."""
    if not args or not str(getattr(sender, "name", "")).startswith("weightspace."):
        return
    from webapp.jobs.models import Job

    job = Job.objects.filter(pk=args[0]).first()
    if job is not None and exception is not None:
        job.fail(failure_reason(exception))


@worker_ready.connect
def fail_orphaned_jobs(sender: Any = None, **_: Any) -> None:
    """A worker that (re)starts cannot be running anything yet: fail what it had claimed."""
    from webapp.jobs.models import Job

    hostname = getattr(sender, "hostname", None)
    if hostname:
        count = Job.fail_orphans(
            hostname, "The worker restarted while this job was running; retry it."
        )
        if count:
            log.warning("failed %d job(s) orphaned by a previous run of %s", count, hostname)
