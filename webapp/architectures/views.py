from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.architectures.forms import ArchitectureForm
from webapp.architectures.graphview import param_blocks, viewer_document
from webapp.architectures.models import Architecture, create_from_upload, create_from_zoo
from webapp.core.files import UploadError
from webapp.core.labels import labels_response
from webapp.jobs.kinds import KINDS
from webapp.jobs.models import Job


@login_required
def architecture_new(request: HttpRequest) -> HttpResponse:
    """Upload page: zoo pick or file upload, with the reason shown when something is refused."""
    status = 200
    existing_url = ""
    if request.method == "POST":
        form = ArchitectureForm(request.POST, request.FILES)
        if form.is_valid():
            data = form.cleaned_data
            try:
                if data["source"] == Architecture.Source.ZOO:
                    architecture = create_from_zoo(
                        request.user, data["name"], data["zoo_name"], data["zoo_args"]
                    )
                else:
                    architecture = create_from_upload(
                        request.user, data["name"], data["source"], data["file"],
                        weights=data.get("weights"),
                    )  # fmt: skip
            except UploadError as error:
                form.add_error(None, str(error))
                status = error.status
                existing_url = error.existing_url
            else:
                if request.POST.get("inspect"):
                    job = Job.submit(owner=request.user, kind="inspect", architecture=architecture)
                    return redirect(job)
                return redirect(architecture)
        else:
            status = 400
    else:
        form = ArchitectureForm(initial={"zoo_name": request.GET.get("zoo", "")})
    return render(
        request,
        "architectures/new.html",
        {"form": form, "existing_url": existing_url},
        status=status,
    )


@login_required
def architecture_detail(
    request: HttpRequest, pk: int, forms: dict[str, Any] | None = None, status: int = 200
) -> HttpResponse:
    """Summary, parameter table and graphs from the latest inspection; a form per job kind."""
    architecture = get_object_or_404(Architecture, pk=pk, owner=request.user)
    inspection = architecture.latest_inspection()
    documents: dict[str, object] = {}
    if inspection:
        for artifact in inspection.artifacts.all():
            if artifact.name in ("arch_graph.json", "param_graph.json", "tensors.json"):
                documents[artifact.name] = artifact.read_json()
    graph = documents.get("arch_graph.json")
    neural = documents.get("param_graph.json")
    forms = forms or {}
    job_forms = [
        (kind, forms.get(kind.name) or _job_form(request, architecture, kind))
        for kind in KINDS.values()
        if kind.form is not None
    ]
    context = {
        "architecture": architecture,
        "inspection": inspection,
        "graph": graph,
        "neural": neural,
        "param_blocks": param_blocks(neural) if isinstance(neural, dict) else [],
        "tensors": documents.get("tensors.json"),
        "jobs": architecture.jobs.all()[:20],
        "active_jobs": architecture.jobs.active().exists(),
        "job_forms": job_forms,
    }
    return render(request, "architectures/detail.html", context, status=status)


@login_required
def architecture_viewer_data(request: HttpRequest, pk: int) -> JsonResponse:
    """The graph viewer's document (both graphs, the parameter graph) of the latest
    inspection; 404 for anyone but the owner, and before any inspection."""
    architecture = get_object_or_404(Architecture, pk=pk, owner=request.user)
    inspection = architecture.latest_inspection()
    if inspection is None:
        raise Http404("Not inspected yet.")
    names = ("graph.json", "arch_graph.json", "param_graph.json")
    documents = {
        artifact.name: artifact.read_json()
        for artifact in inspection.artifacts.filter(name__in=names)
    }
    document = viewer_document(documents)
    document["architecture"] = {"id": architecture.pk, "name": architecture.name}
    document["weight_stats"] = architecture.weight_statistics()
    return JsonResponse(document)


@login_required
@require_POST
def architecture_submit(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    """Start a job of ``kind`` from its form on the architecture page (inspect has none).

    The form's parameters go through the same validation and checks as the API's. A refusal
    redirects (303) back to the architecture page at the kind's form, which shows the data
    and the reasons kept in the session (Post/Redirect/Get: a refresh never re-submits).
    """
    from rest_framework.exceptions import ValidationError

    job_kind = KINDS.get(kind)
    if job_kind is None:
        raise Http404(f"No job kind {kind!r}.")
    architecture = get_object_or_404(Architecture, pk=pk, owner=request.user)
    form = (
        job_kind.form(request.POST, owner=request.user, architecture=architecture)
        if job_kind.form
        else None
    )
    refusals: list[str] = []
    if form is None or form.is_valid():
        try:
            parameters = job_kind.clean_parameters(
                form.parameters() if form else None, request.user, architecture
            )
        except ValidationError as error:
            if form is None:
                raise
            detail = error.detail
            refusals = [str(d) for d in detail] if _is_sentences(detail) else [_flatten(detail)]
        else:
            labels = form.labels() if hasattr(form, "labels") else {}
            job = Job.submit(
                owner=request.user, kind=kind, architecture=architecture, parameters=parameters,
                **labels,
            )  # fmt: skip
            return redirect(job)
    data = {k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
    request.session[_REJECTED_FORM.format(pk=pk, kind=kind)] = {"data": data, "errors": refusals}
    response = redirect(f"{architecture.get_absolute_url()}#{kind}")
    response.status_code = 303  # See Other: the browser GETs the page
    return response


@login_required
def architecture_checks(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    """The verdict on a kind's form as it is filled in (htmx, on every change): refusals,
    warnings and notes next to its button, before any job exists."""
    job_kind = KINDS.get(kind)
    if job_kind is None or job_kind.form is None:
        raise Http404(f"No job form {kind!r}.")
    architecture = get_object_or_404(Architecture, pk=pk, owner=request.user)
    verdict = job_kind.preview(architecture, request.user, request.GET)
    return render(request, "jobs/kinds/_verdict.html", {"verdict": verdict, "kind": job_kind})


# A refused form's data and reasons, kept for the one page view after the redirect.
_REJECTED_FORM = "rejected-form:{pk}:{kind}"


def _job_form(request: HttpRequest, architecture: Architecture, kind: Any) -> Any:
    """The kind's form on the architecture page: the one a refused POST left in the session
    (shown once, with its errors), else a fresh one starting on choices that can run."""
    kept = request.session.pop(_REJECTED_FORM.format(pk=architecture.pk, kind=kind.name), None)
    if kept is None:
        return kind.form(owner=request.user, architecture=architecture)
    form = kind.form(kept["data"], owner=request.user, architecture=architecture)
    form.is_valid()  # the field errors come back from the data
    for refusal in kept["errors"]:
        form.add_error(None, refusal)
    return form


def _is_sentences(detail: object) -> bool:
    return isinstance(detail, list) and all(isinstance(d, str) for d in detail)


def _flatten(detail: object) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" if k != "non_field_errors" else _flatten(v)
                         for k, v in detail.items())  # fmt: skip
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


@login_required
def architecture_labels(request: HttpRequest, pk: int) -> HttpResponse:
    """The model's name, tags and notes: shown, an inline form (``?edit=1``), saved (POST)."""
    architecture = get_object_or_404(Architecture, pk=pk, owner=request.user)
    return labels_response(
        request,
        architecture,
        "partials/labels.html",
        name_required=True,
        # The model's name heads its page and titles it: a new name reloads the page.
        refresh_on_name=True,
    )


@login_required
def architecture_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """A confirmation page (GET) and the delete (POST) of a model with its jobs and files;
    refused with the reason while one of its jobs is active."""
    from django.contrib import messages
    from django.urls import reverse

    architecture = get_object_or_404(Architecture, pk=pk, owner=request.user)
    if request.method == "POST":
        try:
            architecture.remove()
        except ValueError as refusal:
            messages.warning(request, str(refusal))
            return redirect(architecture)
        messages.success(request, f"The model “{architecture.name}” and its jobs were deleted.")
        return redirect("dashboard")
    jobs = architecture.jobs.count()
    context = {
        "object": architecture,
        "what": f"the model “{architecture.name}”",
        "refusal": architecture.delete_refusal(),
        "consequences": [
            f"its {jobs} job{'s' if jobs != 1 else ''}, with their metrics and artifacts",
            "its uploaded file" if architecture.file else "its zoo entry",
        ],
        "action": reverse("architecture-delete", args=[architecture.pk]),
        "back": architecture.get_absolute_url(),
        "next": "",
    }
    return render(request, "jobs/confirm_delete.html", context)
