"""Storing uploaded files: streamed, hashed and size-checked, never read whole into memory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import models, transaction
from django.db.models.fields.files import FieldFile
from django.http import FileResponse
from django.template.defaultfilters import filesizeformat

CHUNK = 1 << 20


class UploadError(ValueError):
    """An upload that must be refused; the message is shown to the person who sent it."""

    def __init__(
        self, message: str, status: int = 400, existing_url: str = "",
        existing_id: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        # For duplicates: where the earlier copy lives (its page) and its id (for scripts).
        self.existing_url = existing_url
        self.existing_id = existing_id


@dataclass(frozen=True)
class UploadFacts:
    """What we learn about an upload by streaming over it once."""

    size: int
    sha256: str


def sha256_of(fileobj: IO[bytes]) -> str:
    """Hash a file object in chunks and rewind it."""
    digest = hashlib.sha256()
    fileobj.seek(0)
    for chunk in iter(lambda: fileobj.read(CHUNK), b""):
        digest.update(chunk)
    fileobj.seek(0)
    return digest.hexdigest()


def check_upload(upload: UploadedFile, allowed_suffixes: tuple[str, ...]) -> UploadFacts:
    """Check an upload's name and size and hash it; raise ``UploadError`` when it is refused."""
    name = upload.name or ""
    if not name.lower().endswith(allowed_suffixes):
        wanted = ", ".join(allowed_suffixes)
        raise UploadError(f"'{name}' has the wrong file type; expected one of: {wanted}.")
    if upload.size is None or upload.size == 0:
        raise UploadError(f"'{name}' is empty.")
    if upload.size > settings.MAX_UPLOAD_SIZE:
        raise UploadError(
            f"'{name}' is {filesizeformat(upload.size)}; the limit is "
            f"{filesizeformat(settings.MAX_UPLOAD_SIZE)}.",
            status=413,
        )
    return UploadFacts(size=upload.size, sha256=sha256_of(upload))


NAME_LENGTH = 200  # the ``name`` columns of uploads


def fit_name(text: str, limit: int = NAME_LENGTH) -> str:
    """``text`` shortened to ``limit`` characters by cutting its middle, so that both the
    start and the file suffix stay readable (``very-long-na…me.safetensors``)."""
    if len(text) <= limit:
        return text
    keep = limit - 1
    return text[: keep - keep // 3] + "…" + text[len(text) - keep // 3 :]


def upload_path(prefix: str, sha256: str, filename: str) -> str:
    """Storage path for an upload: content-addressed so two owners never overwrite each other."""
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"{prefix}/{sha256[:2]}/{sha256}.{suffix}"


def refuse_duplicate(queryset: models.QuerySet, sha256: str, sentence: str) -> None:
    """409 when the owner's ``queryset`` already holds this content.

    ``sentence`` is formatted with the earlier copy's ``name`` and ``pk``.
    """
    existing = queryset.filter(sha256=sha256).first()
    if existing:
        raise UploadError(
            sentence.format(name=existing.name, pk=existing.pk),
            status=409,
            existing_url=existing.get_absolute_url(),
            existing_id=existing.pk,
        )


def save_with_upload(instance: models.Model, upload: UploadedFile, folder: str) -> None:
    """Store ``upload`` in ``instance.file`` and then the row; if the row cannot be saved the
    file is removed again, so a failed upload leaves nothing half-stored."""
    upload.seek(0)
    instance.file.save(upload_path(folder, instance.sha256, upload.name), upload, save=False)
    try:
        with transaction.atomic():
            instance.save()
    except Exception:
        instance.file.delete(save=False)
        raise


def stored_file_response(
    field: FieldFile, *, filename: str, content_type: str | None = None
) -> FileResponse:
    """A download of a stored file, streamed in chunks from wherever the storage keeps it.

    On disk that is the open file; in an S3 bucket it is the object's body straight from the
    store (django-storages' own file would first copy the whole object to a temporary file).
    """
    field.open("rb")
    remote = getattr(field.file, "obj", None)  # storages.backends.s3.S3File: the boto3 object
    if remote is None:
        return FileResponse(field, as_attachment=True, filename=filename, content_type=content_type)
    response = FileResponse(
        remote.get()["Body"], as_attachment=True, filename=filename, content_type=content_type
    )
    response["Content-Length"] = str(remote.content_length)
    return response
