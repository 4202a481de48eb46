"""Task decorators that hold the job policy in one place (``cpu_task``, ``gpu_task``).

A decorated function receives a claimed, running ``Job`` and a ``progress`` callback; it does
its work through the engine and returns ``(message, result)``, a small JSON summary for the job
(big outputs go to artifacts). Everything around it is here: claiming the
job so a re-delivered message does nothing, turning exceptions, cancels and time limits into the
job's final status, and the late-ack / prefetch-1 / no-retry policy for long work.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from workers.celery import app
from workers.errors import Cancelled, ModelError, ProgressFn

log = logging.getLogger(__name__)

JobBody = Callable[[Any, ProgressFn], tuple[str, dict]]


def _progress_reporter(job: Any) -> ProgressFn:
    """A callback that stores progress and raises ``Cancelled`` once the user asked to stop."""

    def progress(fraction: float, message: str = "") -> None:
        if job.set_progress(fraction, message):
            raise Cancelled()

    return progress


_PATH = re.compile(r"(?<![\w.])(?:/[\w.@+-]+){2,}/?")


def crash_reason(error: BaseException) -> str:
    """A sentence about an unexpected error for the job page: its type and first line, with
    file-system paths of the worker shortened to their last component."""
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    first_line = _PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], first_line)
    name = type(error).__name__
    detail = f" ({name}: {first_line})" if first_line else f" ({name})"
    return (
        f"The job stopped on an unexpected error{detail}. This is a fault of the service, not of "
        "your input; the details are in the worker's log."
    )


def run_job(job_id: int, body: JobBody, worker: str) -> str:
    """Claim job ``job_id`` and run ``body`` on it; return what happened, for the log."""
    from webapp.jobs.models import Job

    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return f"job {job_id} no longer exists"
    if not job.claim(worker):
        # Already running or finished elsewhere, or cancelled while queued: do nothing.
        return f"job {job_id} not claimed (status {job.status})"
    try:
        message, result = body(job, _progress_reporter(job))
    except Cancelled:
        job.mark_cancelled("Cancelled by the user")
        return f"job {job_id} cancelled"
    except SoftTimeLimitExceeded:
        job.fail(f"The job ran past its time limit of {settings.JOB_SOFT_TIME_LIMIT} s.")
        return f"job {job_id} timed out"
    except ModelError as error:
        job.fail(str(error))
        return f"job {job_id} failed: {error}"
    except Exception as error:  # noqa: BLE001 - any crash must end the job, never leave it running
        # The traceback (with the worker's paths) goes to the worker log only; the person
        # gets a sentence.
        log.exception("job %s crashed", job_id)
        job.fail(crash_reason(error))
        return f"job {job_id} crashed"
    job.refresh_from_db()
    if job.cancel_requested and job.status == Job.Status.RUNNING:
        job.mark_cancelled("Cancelled by the user")
        return f"job {job_id} cancelled"
    job.succeed(message, result)
    return f"job {job_id} succeeded"


def refuse_oversized(architecture: Any, what: str, bytes_per_param: int) -> None:
    """``ModelError`` naming both sizes when a job on ``architecture`` would need more memory
    than ``JOB_MEMORY_LIMIT``, checked before anything is built (0: no limit).

    The parameter count comes from the zoo entry's arguments, else from the inspection, else
    from the uploaded file's size (float32 weights); nothing known, nothing refused.
    """
    from workers.catalog.estimates import FLOAT_BYTES, memory_refusal
    from workers.catalog.models import param_count

    limit = settings.JOB_MEMORY_LIMIT
    if not limit:
        return
    count: int | None = None
    if architecture.source == "zoo":
        try:
            count = param_count(architecture.zoo_name, architecture.zoo_args)
        except ValueError:
            count = None  # building will say what is wrong with the arguments
    if count is None:
        count = architecture.num_params or (architecture.file_bytes or 0) // FLOAT_BYTES or None
    message = memory_refusal(what, count, bytes_per_param, limit) if count else None
    if message:
        raise ModelError(message)


def job_task(name: str, queue: str) -> Callable[[JobBody], Task]:
    """Register ``body`` as the Celery task ``name`` on ``queue`` with the job policy."""

    def decorate(body: JobBody) -> Task:
        def task(self: Task, job_id: int) -> str:
            return run_job(job_id, body, worker=self.request.hostname or "unknown")

        task.__name__ = body.__name__
        task.__doc__ = body.__doc__
        app.conf.task_routes = {**(app.conf.task_routes or {}), name: {"queue": queue}}
        return app.task(
            task,
            name=name,
            bind=True,
            acks_late=True,  # a message is only gone once the job has ended
            reject_on_worker_lost=False,  # a crash fails the job; it is not re-run blindly
            max_retries=0,
            soft_time_limit=settings.JOB_SOFT_TIME_LIMIT,
            time_limit=settings.JOB_TIME_LIMIT,
        )

    return decorate


def cpu_task(name: str) -> Callable[[JobBody], Task]:
    """A job task for the CPU queue (inspection, graph building)."""
    return job_task(name, "cpu")


def gpu_task(name: str) -> Callable[[JobBody], Task]:
    """A job task for the GPU queue (prediction, training); CUDA is initialised inside it."""
    return job_task(name, "gpu")
