"""Request-level guards: oversize bodies refused before Django reads them; outages and errors
answered as a person (or a script) can use them."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
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


log = logging.getLogger(__name__)


class OutageMiddleware:
    """A broker or database outage gets a 503 with a sentence (JSON under ``/api/``, so a
    script can read it); every other error under ``/api/`` gets a JSON body too, never
    Django's HTML page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
            and not getattr(response, "streaming", False)
        ):
            return JsonResponse({"detail": _reason(response)}, status=response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from webapp.jobs.models import QueueUnavailable

        if isinstance(exception, QueueUnavailable):
            detail, status = str(exception), 503
        elif isinstance(exception, OperationalError | InterfaceError):
            log.warning("database unavailable: %s", exception)
            detail, status = "The database is unavailable right now; try again shortly.", 503
        elif request.path.startswith("/api/"):
            log.error("error on %s", request.path, exc_info=exception)
            # As Django's own handler does, so that test clients still see the exception.
            got_request_exception.send(sender=None, request=request)
            detail, status = "The server hit an unexpected error; it has been logged.", 500
        else:
            return None  # Django's own 500 handling (and its log) for pages
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": detail}, status=status)
        return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's last-resort 500 handler (``handler500``), for errors raised outside views —
    in another middleware's response phase, say a session save while the database is down:
    the same 503 sentence for an outage, JSON under ``/api/``."""
    import sys

    from django.views.defaults import server_error as django_server_error

    exception = sys.exc_info()[1]
    outage = isinstance(exception, OperationalError | InterfaceError)
    if outage:
        detail, status = "The database is unavailable right now; try again shortly.", 503
    elif request.path.startswith("/api/"):
        detail, status = "The server hit an unexpected error; it has been logged.", 500
    else:
        return django_server_error(request)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": detail}, status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


def _reason(response: HttpResponse) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(response.status_code).phrase
    except ValueError:
        return "Error"
