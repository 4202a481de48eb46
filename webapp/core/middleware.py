"""Refuse oversize request bodies before Django reads them."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.defaultfilters import filesizeformat


class UploadSizeLimitMiddleware:
    """Answer 413 when ``Content-Length`` is above ``MAX_UPLOAD_SIZE``.

    Checking the header costs nothing and keeps a multi-gigabyte body from ever being spooled to
    disk; the upload validators check the real file size again after parsing.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.MAX_UPLOAD_SIZE
        if length > limit:
            detail = (
                f"The upload is {filesizeformat(length)}; the limit is {filesizeformat(limit)}."
            )
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": detail}, status=413)
            return HttpResponse(detail, status=413, content_type="text/plain")
        return self.get_response(request)
