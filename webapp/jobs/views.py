from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.humanize.templatetags.humanize import intcomma
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from webapp.architectures.models import Architecture
from webapp.checkpoints.models import Checkpoint
from webapp.core.htmx import render_page
from webapp.core.labels import labels_response
from webapp.datasets.models import Dataset
from webapp.jobs import charts
from webapp.jobs.filters import DashboardFilters, job_page
from webapp.jobs.models import Job, with_error_head


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
    jobs = Job.objects.select_related("architecture", "checkpoint", "retry_of")
    return get_object_or_404(jobs, pk=pk, owner=request.user)


# Columns a dashboard row never shows; they can be large (a traceback, a tensor table).
_UNSHOWN_JOB_FIELDS = ("parameters", "result", "error")
_UNSHOWN_ARCH_FIELDS = ("summary", "input_shape")


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Jobs (filtered, searched, a page at a time), architectures, checkpoints and data sets
    of the signed-in user. The filters live in the query string, so a view can be shared; an
    htmx request from the filter form gets only the jobs' table."""
    owner = request.user
    # One query per list (the row's architecture comes joined, the page's total is a window
    # count of the same query), and none of the columns the page never shows: a failed job's
    # error beyond its first lines, results, checkpoint tensor tables, summaries.
    architectures = list(
        Architecture.objects.filter(owner=owner).only(
            "id", "name", "source", "zoo_name", "zoo_args", "num_params", "sha256",
            "created_at", "tags",
        )
    )  # fmt: skip
    clashes = name_clashes(architectures)
    filters = DashboardFilters(
        request.GET, models=[(a.pk, model_label(a, clashes)) for a in architectures]
    )
    jobs = with_error_head(
        Job.objects.filter(owner=owner)
        .select_related("architecture")
        .defer(*_UNSHOWN_JOB_FIELDS, *(f"architecture__{f}" for f in _UNSHOWN_ARCH_FIELDS))
    )
    page = job_page(jobs, filters.values(), filters.page_number)
    context = {
        "page": page,
        "jobs": page.jobs,
        "filters": filters,
        "filtered": bool(page.filters),
        "clashes": clashes,
        "compare_url": _compare_url(),
        "next_url": request.get_full_path(),  # a row's Delete comes back to this view
    }
    htmx = getattr(request, "htmx", None)
    if htmx and htmx.target == "jobs-results" and not htmx.history_restore_request:
        response = render(request, "jobs/partials/jobs_results.html", context)
        # The address bar gets the view without the form's empty fields: short to share.
        query = page.query()
        dashboard_url = reverse("dashboard")
        response.headers["HX-Push-Url"] = f"{dashboard_url}?{query}" if query else dashboard_url
    else:
        tag = page.filters.get("tag")
        models = [a for a in architectures if tag in a.tag_list] if tag else architectures
        context.update(
            architectures=models[:50],
            checkpoints=list(
                Checkpoint.objects.filter(owner=owner).defer("tensors", "metadata")[:50]
            ),
            datasets=list(Dataset.objects.filter(owner=owner).defer("summary")[:50]),
        )
        response = render(request, "jobs/dashboard.html", context)
    response.headers["Vary"] = "HX-Request"
    return response


def name_clashes(architectures: list[Architecture]) -> set[str]:
    """The names two or more of these models share (their rows then show the short hash)."""
    seen: set[str] = set()
    clashes: set[str] = set()
    for architecture in architectures:
        (clashes if architecture.name in seen else seen).add(architecture.name)
    return clashes


def model_label(architecture: Architecture, clashes: set[str]) -> str:
    """A model's name, with the start of its hash when another model is called alike."""
    if architecture.name in clashes:
        return f"{architecture.name} ({architecture.short_sha})"
    return architecture.name


def _compare_url() -> str:
    try:
        return reverse("job-compare")
    except NoReverseMatch:  # the comparison page is another part's; the path is fixed
        return "/jobs/compare/"


@login_required
def job_row(request: HttpRequest, pk: int) -> HttpResponse:
    """One dashboard row; it polls itself only while the job is active."""
    job = _own_job(request, pk)
    clashes: set[str] = set()
    if job.architecture and (
        Architecture.objects.filter(owner=request.user, name=job.architecture.name)
        .exclude(pk=job.architecture_id)
        .exists()
    ):
        clashes.add(job.architecture.name)
    return render(request, "jobs/partials/row.html", {"job": job, "clashes": clashes})


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The job page; htmx polls fetch only its live part (status, progress, chart)."""
    job = _own_job(request, pk)
    context = {
        "job": job,
        "result_items": result_items(job.result),
        "parameter_items": parameter_items(job),
        "queue_position": queue_text(job),
        "speed": speed_text(job),
        "has_metrics": job.metrics.exists(),
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


# --- what was run, charts data, exports and the comparison (issue 11) -----------------------
EXPORT_FORMATS = ("csv", "json")


def parameter_items(job: Job) -> list[tuple[str, str, str | None]]:
    """Everything a job was run with as (label, text, link or None): the model, the
    checkpoint, the data set (linked when it is an upload) and every parameter."""
    rows: list[tuple[str, str, str | None]] = []
    if job.architecture_id:
        rows.append(("Model", job.architecture.name, job.architecture.get_absolute_url()))
    if job.checkpoint_id:
        rows.append(("Checkpoint", job.checkpoint.name, job.checkpoint.get_absolute_url()))
    for key, value in job.parameters.items():
        label = key.replace("_", " ").capitalize()
        if key == "dataset_id":
            dataset = Dataset.objects.filter(pk=value, owner=job.owner_id).only("name").first()
            text = dataset.name if dataset else f"#{value} (deleted)"
            rows.append(("Data set", text, dataset.get_absolute_url() if dataset else None))
        elif key == "dataset":
            rows.append(("Data set", f"{value} (built-in)", None))
        else:
            rows.append((label, charts.format_value(value), None))
    return rows


def queue_text(job: Job) -> tuple[str, int] | None:
    """("3rd", 2): the job's place in its queue and how many jobs are ahead; None unless queued."""
    position = job.queue_position()
    return (charts.ordinal(position), position - 1) if position else None


def speed_text(job: Job) -> dict[str, object]:
    """Steps per second and the time left as the page shows them ("about 2 min 5 s")."""
    speed: dict[str, object] = dict(job.speed())
    eta = speed.get("eta_s")
    speed["eta"] = f"about {charts.duration_text(eta)}" if isinstance(eta, float) else None
    return speed


@login_required
def job_charts_data(request: HttpRequest, pk: int) -> JsonResponse:
    """The job page's chart data; ``?after=<cursor>`` answers only the points recorded since."""
    job = _own_job(request, pk)
    after = parse_datetime(request.GET.get("after", "")) if request.GET.get("after") else None
    return JsonResponse(charts.chart_payload(job, after=after))


def _attachment(body: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
def job_metrics_export(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    """Every metric point of a job as a CSV or JSON download (series, step, value, time)."""
    job = _own_job(request, pk)
    if fmt not in EXPORT_FORMATS:
        raise Http404("Metrics download as .csv or .json.")
    if fmt == "csv":
        return _attachment(job.metrics_csv(), "text/csv", f"job-{job.pk}-metrics.csv")
    body = json.dumps({"job": job.pk, "points": charts.json_safe(job.metric_rows())})
    return _attachment(body, "application/json", f"job-{job.pk}-metrics.json")


def _comparison(request: HttpRequest) -> tuple[dict, list[int], list[str]]:
    data, left_out, bad = charts.comparison_of(
        request.user, request.GET.getlist("ids"), request.GET.get("targets"),
        request.GET.get("loss"),
    )  # fmt: skip
    if data is None:
        raise Http404("None of these jobs is yours.")
    return data, left_out, bad


@login_required
def job_compare(request: HttpRequest) -> HttpResponse:
    """Overlaid curves, parameters and results of the jobs in ``?ids=``; the URL is the
    selection, so it can be shared (with its owner: other people's jobs are never shown)."""
    data, missing, bad = _comparison(request)
    query = request.GET.urlencode()
    context = {
        "data": data,
        "missing": missing,
        "bad": bad,
        "too_many": len(data["jobs"]) == charts.MAX_COMPARED_JOBS and missing,
        "query": query,
        "ids": ",".join(str(job.pk) for job in data["jobs"]),
        "rows": charts.comparison_rows(data),
        "chart_data": {"series": data["series"], "note": data["note"]},
        "active": any(job.is_active for job in data["jobs"]),
    }
    return render(request, "jobs/compare.html", context)


@login_required
def job_compare_export(request: HttpRequest, fmt: str) -> HttpResponse:
    """The comparison's results (and each job's parameters, in JSON) as a download."""
    if fmt not in EXPORT_FORMATS:
        raise Http404("Comparisons download as .csv or .json.")
    data, _, _ = _comparison(request)
    rows = charts.comparison_rows(data)
    if fmt == "csv":
        return _attachment(charts.rows_csv(rows), "text/csv", "comparison.csv")
    body = json.dumps(charts.compare_json(data, rows))
    return _attachment(body, "application/json", "comparison.json")


@login_required
def job_labels(request: HttpRequest, pk: int) -> HttpResponse:
    """The name, tags and notes on the job page: shown, an inline form (``?edit=1``), saved
    (POST). htmx swaps the partial; without htmx a POST goes back to the page."""
    job = _own_job(request, pk)
    return labels_response(request, job, "partials/labels.html", name_required=False)


@login_required
def job_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """A confirmation page (GET) and the delete itself (POST); an active job is refused with
    the reason (cancel it first)."""
    job = _own_job(request, pk)
    if request.method == "POST":
        try:
            job.remove()
        except ValueError as refusal:
            messages.warning(request, str(refusal))
            return redirect(job)
        messages.success(request, f"Job #{pk} and its files were deleted.")
        return redirect(_safe_next(request) or reverse("dashboard"))
    context = {
        "object": job,
        "what": f"{job.get_kind_display()} job #{job.pk}" + (f" “{job.name}”" if job.name else ""),
        "refusal": job.delete_refusal(),
        "consequences": _job_consequences(job),
        "action": reverse("job-delete", args=[job.pk]),
        "back": job.get_absolute_url(),
        "next": _safe_next(request),
    }
    return render(request, "jobs/confirm_delete.html", context)


def _job_consequences(job: Job) -> list[str]:
    points, files = job.metrics.count(), job.artifacts.count()
    consequences = []
    if points:
        consequences.append(f"its {points:,} metric point{'s' if points != 1 else ''}")
    if files:
        consequences.append(f"its {files} artifact file{'s' if files != 1 else ''}")
    return consequences


def _safe_next(request: HttpRequest) -> str:
    """Where to go after a delete: a local path given as ``next``, never another site."""
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return ""
