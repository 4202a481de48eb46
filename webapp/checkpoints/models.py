"""Checkpoints: tensors uploaded as .safetensors or weights-only torch files."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse


class Checkpoint(models.Model):
    """An uploaded set of tensors, scanned (never unpickled) before it was stored.

    ``tensors`` holds name/dtype/shape for each tensor when the format's header tells it
    (safetensors); for torch files only the count is known to the web tier.
    """

    class Format(models.TextChoices):
        SAFETENSORS = "safetensors", "safetensors"
        TORCH = "torch", "torch.save (weights only)"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="checkpoints"
    )
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to="checkpoints/", max_length=300)
    format = models.CharField(max_length=16, choices=Format.choices)
    num_tensors = models.PositiveIntegerField()
    num_elements = models.BigIntegerField(null=True, blank=True)
    file_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    tensors = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    architecture = models.ForeignKey(
        "architectures.Architecture",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="checkpoints",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "sha256"], name="checkpoint_unique_content")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("checkpoint-detail", args=[self.pk])


def create_checkpoint(owner: Any, name: str, upload: Any, architecture: Any = None) -> Checkpoint:
    """Scan and store an uploaded checkpoint; ``UploadError`` when refused, nothing stored then."""
    from webapp.core.files import (
        UploadError,
        check_upload,
        fit_name,
        refuse_duplicate,
        save_with_upload,
    )
    from workers.errors import ModelError
    from workers.safety.checkpoints import scan_checkpoint

    facts = check_upload(upload, (".safetensors", ".pt", ".pth"))
    # A known file is answered before the (costly) scan.
    refuse_duplicate(
        owner.checkpoints,
        facts.sha256,
        "You already uploaded this file as '{name}' (checkpoint {pk}).",
    )
    try:
        scanned = scan_checkpoint(
            upload, upload.name, facts.size, max_inflated=settings.UPLOAD_MAX_INFLATED
        )
    except ModelError as error:
        raise UploadError(str(error)) from None
    checkpoint = Checkpoint(
        owner=owner,
        name=fit_name(name or upload.name),
        format=scanned.format,
        num_tensors=scanned.num_tensors,
        num_elements=scanned.num_elements,
        tensors=scanned.tensors,
        metadata=scanned.metadata,
        file_bytes=facts.size,
        sha256=facts.sha256,
        architecture=architecture,
    )
    save_with_upload(checkpoint, upload, f"checkpoints/{owner.pk}")
    return checkpoint


def checkpoint_from_artifact(owner: Any, artifact: Any, name: str, architecture: Any) -> Checkpoint:
    """A checkpoint of ``owner``'s holding a job's ``.safetensors`` artifact (a GHN prediction,
    say), so that other jobs can start from it; the existing one when the content is known."""
    from django.core.files.base import ContentFile

    from workers.safety.checkpoints import scan_safetensors

    existing = Checkpoint.objects.filter(owner=owner, sha256=artifact.sha256).first()
    if existing is not None:
        return existing
    with artifact.file.open("rb") as handle:
        content = handle.read()
    facts = scan_safetensors(ContentFile(content), len(content))
    checkpoint = Checkpoint(
        owner=owner,
        name=name,
        format=Checkpoint.Format.SAFETENSORS,
        num_tensors=facts.num_tensors,
        num_elements=facts.num_elements,
        tensors=facts.tensors,
        file_bytes=len(content),
        sha256=artifact.sha256,
        architecture=architecture,
    )
    checkpoint.file.save(
        f"checkpoints/{owner.pk}/{artifact.sha256}.safetensors", ContentFile(content), save=True
    )
    return checkpoint
