"""Data sets people upload to train on: ``.npz`` arrays, image-folder zips or plain text."""

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
    for classification; ``.zip`` files hold class folders of PNG/JPEG images (optionally under
    ``train/`` and ``test/``; see ``workers.safety.image_folder``); ``.txt`` files are UTF-8
    text for character-level language models. ``summary`` is what the check learnt: for
    classification ``samples``, ``test_samples`` (when known), ``input_shape`` and ``classes``
    (a count), and for image folders also ``class_names`` and ``class_counts``
    (``{"train": [...], "test": [...]}``, in class-id order); for text ``characters`` and
    ``vocabulary``.
    """

    class Format(models.TextChoices):
        NPZ = "npz", "Arrays (.npz)"
        IMAGES = "images", "Image folders (.zip)"
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
        return "char-lm" if self.format == self.Format.TEXT else "classification"

    @property
    def input_shape(self) -> list[int] | None:
        """One example's shape ([channels, height, width] for images), None for text."""
        return self.summary.get("input_shape")

    @property
    def num_classes(self) -> int | None:
        """How many classes a classifier trained on it must output, None for text."""
        return self.summary.get("classes")

    @property
    def class_rows(self) -> list[dict[str, Any]]:
        """Per class (image folders only): id, name, training and test images."""
        names = self.summary.get("class_names") or []
        counts = self.summary.get("class_counts") or {}
        train, test = counts.get("train", []), counts.get("test", [])
        return [
            {"id": i, "name": name,
             "train": train[i] if i < len(train) else 0,
             "test": test[i] if i < len(test) else 0}
            for i, name in enumerate(names)
        ]  # fmt: skip


SUFFIXES = {".npz": Dataset.Format.NPZ, ".zip": Dataset.Format.IMAGES, ".txt": Dataset.Format.TEXT}


def refuse_unavailable_builtin(name: str | None) -> None:
    """Refuse (a DRF ``ValidationError`` on ``dataset``) a built-in data set that the workers
    would have to download where ``DATASET_DOWNLOADS`` is off; nothing for any other name."""
    from rest_framework import serializers

    from workers.catalog.datasets import DATASETS

    entry = DATASETS.get(name or "")
    if entry is not None and entry.download and not settings.DATASET_DOWNLOADS:
        raise serializers.ValidationError(
            {"dataset": f"{entry.name} would be downloaded, but downloads are off on this "
             "deployment (DATASET_DOWNLOADS=off); upload it as an image-folder zip instead."}
        )  # fmt: skip


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

    facts = check_upload(upload, tuple(SUFFIXES))
    fmt = SUFFIXES["." + upload.name.lower().rsplit(".", 1)[-1]]
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
