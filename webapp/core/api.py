"""Shared REST pieces: owner-only querysets and the viewset shapes the apps use."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import mixins, viewsets


class OwnedQuerysetMixin:
    """Limit a viewset to the requesting user's rows, so other users' objects answer 404."""

    request: object

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()  # type: ignore[misc]
        return queryset.filter(owner=self.request.user)  # type: ignore[attr-defined]


class OwnedViewSet(
    OwnedQuerysetMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Create, list and retrieve the requesting user's objects (no updates: rows are records)."""


class OwnedDeletableViewSet(mixins.DestroyModelMixin, OwnedViewSet):
    """``OwnedViewSet`` whose objects their owner may also delete."""
