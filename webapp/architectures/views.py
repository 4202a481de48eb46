from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.architectures.forms import ArchitectureForm
from webapp.architectures.graphview import MAX_DRAWN_NODES, hierarchy, layout_graph
from webapp.architectures.models import Architecture, create_from_upload, create_from_zoo
from webapp.core.files import UploadError
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
    request: HttpRequest,
    pk: int,
    train_form: object = None,
    predict_form: object = None,
    status: int = 200,
) -> HttpResponse:
    """Summary, parameter table and graphs from the latest inspection; train and predict."""
    from webapp.jobs.forms import PredictForm, TrainForm

    architecture = get_object_or_404(Architecture, pk=pk, owner=request.user)
    inspection = architecture.latest_inspection()
    documents: dict[str, object] = {}
    if inspection:
        for artifact in inspection.artifacts.all():
            if artifact.name in ("arch_graph.json", "param_graph.json", "tensors.json"):
                documents[artifact.name] = artifact.read_json()
    graph = documents.get("arch_graph.json")
    drawable = isinstance(graph, dict) and "nodes" in graph
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
        "train_form": train_form or TrainForm(owner=request.user),
        "predict_form": predict_form or PredictForm(),
    }
    return render(request, "architectures/detail.html", context, status=status)


@login_required
@require_POST
def architecture_train(request: HttpRequest, pk: int) -> HttpResponse:
    """Start a train job from the form on the architecture page."""
    from webapp.jobs.forms import TrainForm

    return _submit_from_form(request, pk, "train", TrainForm(request.POST, owner=request.user))


@login_required
@require_POST
def architecture_predict(request: HttpRequest, pk: int) -> HttpResponse:
    """Start a predict job from the form on the architecture page."""
    from webapp.jobs.forms import PredictForm

    return _submit_from_form(request, pk, "predict", PredictForm(request.POST))


def _submit_from_form(request: HttpRequest, pk: int, kind: str, form: Any) -> HttpResponse:
    """Validate a job form with the API's parameter rules; submit, or show the page again."""
    from rest_framework.exceptions import ValidationError

    from webapp.jobs.parameters import clean_parameters

    architecture = get_object_or_404(Architecture, pk=pk, owner=request.user)
    if form.is_valid():
        try:
            parameters = clean_parameters(kind, form.parameters(), request.user)
        except ValidationError as error:
            form.add_error(None, _flatten(error.detail))
        else:
            job = Job.submit(
                owner=request.user, kind=kind, architecture=architecture, parameters=parameters
            )
            return redirect(job)
    return architecture_detail(request, pk, **{f"{kind}_form": form}, status=400)


def _flatten(detail: object) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" if k != "non_field_errors" else _flatten(v)
                         for k, v in detail.items())  # fmt: skip
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


@login_required
@require_POST
def architecture_inspect(request: HttpRequest, pk: int) -> HttpResponse:
    architecture = get_object_or_404(Architecture, pk=pk, owner=request.user)
    job = Job.submit(owner=request.user, kind="inspect", architecture=architecture)
    return redirect(job)
