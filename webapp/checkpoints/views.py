from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from webapp.checkpoints.forms import CheckpointForm
from webapp.checkpoints.models import Checkpoint, create_checkpoint
from webapp.core.files import UploadError


@login_required
def checkpoint_new(request: HttpRequest) -> HttpResponse:
    status = 200
    existing_url = ""
    if request.method == "POST":
        form = CheckpointForm(request.POST, request.FILES, owner=request.user)
        if form.is_valid():
            data = form.cleaned_data
            try:
                checkpoint = create_checkpoint(
                    request.user, data["name"], data["file"], data["architecture"]
                )
            except UploadError as error:
                form.add_error("file", str(error))
                status = error.status
                existing_url = error.existing_url
            else:
                return redirect(checkpoint)
        else:
            status = 400
    else:
        form = CheckpointForm(owner=request.user)
    return render(
        request, "checkpoints/new.html", {"form": form, "existing_url": existing_url}, status=status
    )


@login_required
def checkpoint_detail(request: HttpRequest, pk: int) -> HttpResponse:
    checkpoint = get_object_or_404(Checkpoint, pk=pk, owner=request.user)
    return render(request, "checkpoints/detail.html", {"checkpoint": checkpoint})
