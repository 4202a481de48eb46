"""API pagination with a hard maximum.

Kept apart from ``webapp.core.api``: DRF imports the pagination class while it loads its own
viewsets, so this module must not import them.
"""

from __future__ import annotations

from django.conf import settings
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
