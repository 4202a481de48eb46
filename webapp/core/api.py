"""Shared REST pieces: owner-only querysets, the viewset shapes the apps use, and the JSON
object field of request bodies."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import mixins, serializers, viewsets


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


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {},
        "description": "A JSON object (in a multipart form: its JSON text); null means {}.",
    }
)
class JSONObjectField(serializers.JSONField):
    """A JSON object that may also arrive as a string (multipart forms cannot nest).

    ``null`` (and an empty string) stand for ``{}``, as leaving the field out does.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None and self.allow_null:
            return True, {}
        return super().validate_empty_values(data)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                data = json.loads(data) if data.strip() else {}
            except json.JSONDecodeError as error:
                raise serializers.ValidationError(f"Not valid JSON: {error}") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise serializers.ValidationError('Expected a JSON object such as {"num_classes": 10}.')
        return data
