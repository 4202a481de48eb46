from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from webapp.architectures.models import Architecture


class ArchitectureSerializer(serializers.ModelSerializer):
    """An architecture as the API shows it."""

    url = serializers.HyperlinkedIdentityField(view_name="api-architecture-detail")
    graph_url = serializers.HyperlinkedIdentityField(view_name="api-architecture-graph")
    latest_inspection = serializers.SerializerMethodField()

    class Meta:
        model = Architecture
        fields = [
            "id", "url", "name", "source", "zoo_name", "zoo_args", "file_bytes", "sha256",
            "num_params", "input_shape", "summary", "inspected_at", "created_at",
            "latest_inspection", "graph_url",
        ]  # fmt: skip
        read_only_fields = fields

    def get_latest_inspection(self, obj: Architecture) -> int | None:
        return obj.latest_inspection_id


class JSONObjectField(serializers.JSONField):
    """A JSON object that may also arrive as a string (multipart forms cannot nest)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                data = json.loads(data) if data.strip() else {}
            except json.JSONDecodeError as error:
                raise serializers.ValidationError(f"Not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise serializers.ValidationError('Expected a JSON object such as {"num_classes": 10}.')
        return data


class ArchitectureCreateSerializer(serializers.Serializer):
    """Add an architecture: ``source=zoo`` with ``zoo_name`` (+ ``zoo_args``), or a file."""

    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    source = serializers.ChoiceField(choices=Architecture.Source.choices)
    zoo_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    zoo_args = JSONObjectField(required=False)
    file = serializers.FileField(required=False, allow_empty_file=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["source"] == Architecture.Source.ZOO:
            if not attrs.get("zoo_name"):
                raise serializers.ValidationError({"zoo_name": "Pick a zoo model by name."})
        elif not attrs.get("file"):
            raise serializers.ValidationError({"file": "Attach the model file."})
        return attrs
