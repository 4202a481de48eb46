"""Shared REST pieces: pagination with a hard maximum and owner-only querysets."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """Page-number pagination; ``page_size`` may be asked for, never above the hard maximum."""

    page_size_query_param = "page_size"

    @property
    def page_size(self) -> int:  # type: ignore[override]
        return settings.API_PAGE_SIZE

    @property
    def max_page_size(self) -> int:  # type: ignore[override]
        return settings.API_MAX_PAGE_SIZE


class OwnedQuerysetMixin:
    """Limit a viewset to the requesting user's rows, so other users' objects answer 404."""

    request: object

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()  # type: ignore[misc]
        return queryset.filter(owner=self.request.user)  # type: ignore[attr-defined]
