"""Data sets people upload to train on: ``.npz`` arrays or plain text."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse


class Dataset(models.Model):
    """An uploaded training set, checked (shapes, values, labels or text) before it was stored.

    ``.npz`` files hold ``x`` [N, ...] and integer ``y`` [N] (optionally ``x_test``/``y_test``)
    for classification; ``.txt`` files are UTF-8 text for character-level language models.
    ``summary`` is what the check learnt (samples, input shape, classes; or characters and
    vocabulary).
    """

    class Format(models.TextChoices):
        NPZ = "npz", "Arrays (.npz)"
        TEXT = "text", "Text (.txt)"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets"
    )
    name = models.CharField(max_length=200)
    format = models.CharField(max_length=8, choices=Format.choices)
    file = models.FileField(upload_to="datasets/", max_length=300)
    file_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "sha256"], name="dataset_unique_content")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("dataset-detail", args=[self.pk])

    @property
    def task(self) -> str:
        return "classification" if self.format == self.Format.NPZ else "char-lm"


def create_dataset(owner: Any, name: str, upload: Any) -> Dataset:
    """Check and store an uploaded data set; ``UploadError`` when refused, nothing stored then."""
    from webapp.core.files import (
        UploadError,
        check_upload,
        fit_name,
        refuse_duplicate,
        save_with_upload,
    )
    from workers.errors import ModelError
    from workers.safety.datasets import inspect_dataset_file

    facts = check_upload(upload, (".npz", ".txt"))
    fmt = Dataset.Format.NPZ if upload.name.lower().endswith(".npz") else Dataset.Format.TEXT
    refuse_duplicate(
        owner.datasets, facts.sha256, "You already uploaded this file as '{name}' (data set {pk})."
    )
    try:
        with _local_path(upload) as path:
            summary = inspect_dataset_file(path, fmt, max_inflated=settings.UPLOAD_MAX_INFLATED)
    except ModelError as error:
        raise UploadError(str(error)) from None
    dataset = Dataset(
        owner=owner,
        name=fit_name(name or upload.name),
        format=fmt,
        file_bytes=facts.size,
        sha256=facts.sha256,
        summary=summary,
    )
    save_with_upload(dataset, upload, f"datasets/{owner.pk}")
    return dataset


@contextmanager
def _local_path(upload: Any) -> Iterator[str]:
    """The upload as a file on disk: Django's temporary file, or a copy of a small one."""
    if hasattr(upload, "temporary_file_path"):
        yield upload.temporary_file_path()
        return
    suffix = "." + upload.name.rsplit(".", 1)[-1]
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        upload.seek(0)
        shutil.copyfileobj(upload, handle)
        handle.flush()
        yield handle.name
    upload.seek(0)
