"""Turning ``UploadError`` into an API response."""

from __future__ import annotations

from rest_framework.response import Response

from webapp.core.files import UploadError


def upload_error_response(error: UploadError) -> Response:
    """A 4xx response whose ``detail`` is the sentence the person needs."""
    body = {"detail": str(error)}
    if error.existing_url:
        body["existing"] = error.existing_url
    if error.existing_id is not None:
        body["existing_id"] = error.existing_id
    return Response(body, status=error.status)
