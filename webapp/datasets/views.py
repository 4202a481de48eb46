from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from webapp.core.files import UploadError
from webapp.datasets.models import Dataset, create_dataset


class DatasetForm(forms.Form):
    file = forms.FileField(
        help_text="a .zip of class folders of PNG/JPEG images; a .npz with arrays x [N, …] and "
        "integer y [N] (optional x_test, y_test); or a UTF-8 .txt file for character-level models"
    )
    name = forms.CharField(max_length=200, required=False)


@login_required
def dataset_new(request: HttpRequest) -> HttpResponse:
    status, existing_url = 200, ""
    form = DatasetForm(request.POST or None, request.FILES or None)
    form.fields["file"].widget.attrs["accept"] = ".zip,.npz,.txt"
    if request.method == "POST":
        if form.is_valid():
            try:
                dataset = create_dataset(
                    request.user, form.cleaned_data["name"], form.cleaned_data["file"]
                )
            except UploadError as error:
                form.add_error("file", str(error))
                status, existing_url = error.status, error.existing_url
            else:
                return redirect(dataset)
        else:
            status = 400
    from django.conf import settings

    from workers.catalog.datasets import DATASETS
    from workers.safety import image_folder

    context = {
        "form": form,
        "existing_url": existing_url,
        "limits": {
            "images": image_folder.MAX_IMAGES,
            "classes": image_folder.MAX_CLASSES,
            "pixels": image_folder.MAX_IMAGE_PIXELS,
        },
        "builtin_downloads": [d for d in DATASETS.values() if d.download],
        "downloads": settings.DATASET_DOWNLOADS,
    }
    return render(request, "datasets/new.html", context, status=status)


@login_required
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=pk, owner=request.user)
    examples = dataset.summary.get("examples") or []
    rows = [
        {**row, "examples": range(len(examples[row["id"]])) if row["id"] < len(examples) else []}
        for row in dataset.class_rows
    ]
    return render(request, "datasets/detail.html", {"dataset": dataset, "class_rows": rows})


@login_required
def dataset_example(request: HttpRequest, pk: int, label: int, index: int) -> HttpResponse:
    """One training image of an image-folder data set, as uploaded (for its page's thumbnails).

    Only the images the upload check listed as examples are served, and only as PNG or JPEG
    by their magic bytes, so nothing else in the archive can be fetched through here.
    """
    from workers.errors import ModelError
    from workers.safety.image_folder import read_example

    dataset = get_object_or_404(Dataset, pk=pk, owner=request.user)
    examples = dataset.summary.get("examples") or []
    if dataset.format != Dataset.Format.IMAGES or label >= len(examples):
        raise Http404("No such image.")
    if index >= len(examples[label]):
        raise Http404("No such image.")
    try:
        with dataset.file.open("rb") as handle:
            data, content_type = read_example(handle, examples[label][index])
    except (ModelError, KeyError, OSError) as error:
        raise Http404("No such image.") from error
    response = HttpResponse(data, content_type=content_type)
    response["Cache-Control"] = "private, max-age=86400"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'"
    return response
