from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from webapp.core.files import UploadError
from webapp.datasets.models import Dataset, create_dataset


class DatasetForm(forms.Form):
    file = forms.FileField(
        help_text=".npz with arrays x [N, …] and integer y [N] (optional x_test, y_test), "
        "or a UTF-8 .txt file for character-level models"
    )
    name = forms.CharField(max_length=200, required=False)


@login_required
def dataset_new(request: HttpRequest) -> HttpResponse:
    status, existing_url = 200, ""
    form = DatasetForm(request.POST or None, request.FILES or None)
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
    context = {"form": form, "existing_url": existing_url}
    return render(request, "datasets/new.html", context, status=status)


@login_required
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=pk, owner=request.user)
    return render(request, "datasets/detail.html", {"dataset": dataset})
