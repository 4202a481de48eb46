"""Turning ``UploadError`` into an API response."""

from __future__ import annotations

from rest_framework.response import Response

from webapp.core.files import UploadError


def upload_error_response(error: UploadError) -> Response:
    """A 4xx response whose ``detail`` is the sentence the person needs."""
    return Response({"detail": str(error)}, status=error.status)
