from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.architectures.forms import ArchitectureForm
from webapp.architectures.graphview import MAX_DRAWN_NODES, hierarchy, layout_graph
from webapp.architectures.models import Architecture, create_from_upload, create_from_zoo
from webapp.core.files import UploadError
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
                        request.user, data["name"], data["source"], data["file"]
                    )
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
    drawable = isinstance(graph, dict) and "nodes" in graph
    forms = forms or {}
    job_forms = [
        (kind, forms.get(kind.name) or kind.form(owner=request.user))
        for kind in KINDS.values()
        if kind.form is not None
    ]
    context = {
        "architecture": architecture,
        "inspection": inspection,
        "graph": graph,
        "layout": layout_graph(graph) if drawable else None,
        "tree": hierarchy(graph) if drawable else [],
        "neural": documents.get("param_graph.json"),
        "max_drawn": MAX_DRAWN_NODES,
        "tensors": documents.get("tensors.json"),
        "jobs": architecture.jobs.all()[:20],
        "active_jobs": architecture.jobs.active().exists(),
        "job_forms": job_forms,
    }
    return render(request, "architectures/detail.html", context, status=status)


@login_required
@require_POST
def architecture_submit(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    """Start a job of ``kind`` from its form on the architecture page (inspect has none).

    The form's parameters go through the same validation as the API's; a refusal shows the
    page again with the reason.
    """
    from rest_framework.exceptions import ValidationError

    job_kind = KINDS.get(kind)
    if job_kind is None:
        raise Http404(f"No job kind {kind!r}.")
    architecture = get_object_or_404(Architecture, pk=pk, owner=request.user)
    form = job_kind.form(request.POST, owner=request.user) if job_kind.form else None
    if form is None or form.is_valid():
        try:
            parameters = job_kind.clean_parameters(
                form.parameters() if form else None, request.user
            )
        except ValidationError as error:
            if form is None:
                raise
            form.add_error(None, _flatten(error.detail))
        else:
            job = Job.submit(
                owner=request.user, kind=kind, architecture=architecture, parameters=parameters
            )
            return redirect(job)
    return architecture_detail(request, pk, forms={kind: form}, status=400)


def _flatten(detail: object) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" if k != "non_field_errors" else _flatten(v)
                         for k, v in detail.items())  # fmt: skip
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)
