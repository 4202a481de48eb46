from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.humanize.templatetags.humanize import intcomma
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.architectures.models import Architecture
from webapp.checkpoints.models import Checkpoint
from webapp.core.htmx import render_page
from webapp.datasets.models import Dataset
from webapp.jobs.charts import metric_charts
from webapp.jobs.models import Job


def result_items(result: dict) -> list[tuple[str, str]]:
    """A job's result summary as (label, text) rows: ``num_params`` → "Num params", 11,689,512."""
    rows = []
    for key, value in result.items():
        if isinstance(value, dict):
            continue  # nested results (a train job's runs) have their own table
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, int):
            text = intcomma(value)
        elif isinstance(value, list):
            text = (
                " × ".join(map(str, value))
                if key.endswith("shape")
                else ", ".join(map(str, value)) or "none"
            )
        else:
            text = str(value)
        rows.append((key.replace("_", " ").capitalize(), text))
    return rows


def _own_job(request: HttpRequest, pk: int) -> Job:
    # The job page links its architecture and, for a retry, the job it retries: one query.
    jobs = Job.objects.select_related("architecture", "retry_of")
    return get_object_or_404(jobs, pk=pk, owner=request.user)


# Columns a dashboard row never shows; they can be large (a traceback, a tensor table).
_UNSHOWN_JOB_FIELDS = ("parameters", "result", "error")
_UNSHOWN_ARCH_FIELDS = ("summary", "input_shape")


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Jobs, architectures and checkpoints of the signed-in user."""
    owner = request.user
    # One query per list (the row's architecture comes joined), and none of the columns the
    # page never shows: a failed job's error, results, checkpoint tensor tables, summaries.
    jobs = (
        Job.objects.filter(owner=owner)
        .select_related("architecture")
        .defer(*_UNSHOWN_JOB_FIELDS, *(f"architecture__{f}" for f in _UNSHOWN_ARCH_FIELDS))
    )
    context = {
        "jobs": list(jobs[:50]),
        "architectures": list(
            Architecture.objects.filter(owner=owner).defer(*_UNSHOWN_ARCH_FIELDS)[:50]
        ),
        "checkpoints": list(
            Checkpoint.objects.filter(owner=owner).defer("tensors", "metadata")[:50]
        ),
        "datasets": list(Dataset.objects.filter(owner=owner).defer("summary")[:50]),
    }
    return render(request, "jobs/dashboard.html", context)


@login_required
def job_row(request: HttpRequest, pk: int) -> HttpResponse:
    """One dashboard row; it polls itself only while the job is active."""
    return render(request, "jobs/partials/row.html", {"job": _own_job(request, pk)})


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The job page; htmx polls fetch only its live part (status, progress, chart)."""
    job = _own_job(request, pk)
    context = {
        "job": job,
        "charts": metric_charts(job.metric_series()),
        "result_items": result_items(job.result),
    }
    return render_page(request, "jobs/detail.html", "jobs/partials/live.html", context)


@login_required
@require_POST
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = _own_job(request, pk)
    if not job.request_cancel():
        messages.warning(request, f"The job has already ended ({job.status}).")
    return redirect(job)


@login_required
@require_POST
def job_retry(request: HttpRequest, pk: int) -> HttpResponse:
    job = _own_job(request, pk)
    if not job.can_retry:
        messages.warning(request, "Only failed or cancelled jobs can be retried.")
        return redirect(job)
    return redirect(job.retry())
