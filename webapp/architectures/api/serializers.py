from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.architectures.models import Architecture
from webapp.core.api import JSONObjectField
from webapp.core.labels import NAME_LENGTH, NOTES_LENGTH, TagsField


class ArchitectureSerializer(serializers.ModelSerializer):
    """An architecture as the API shows it."""

    url = serializers.HyperlinkedIdentityField(view_name="api-architecture-detail")
    graph_url = serializers.HyperlinkedIdentityField(view_name="api-architecture-graph")
    latest_inspection = serializers.SerializerMethodField()
    tags = TagsField(read_only=True)

    class Meta:
        model = Architecture
        fields = [
            "id", "url", "name", "tags", "notes", "source", "zoo_name", "zoo_args", "file_bytes",
            "sha256", "num_params", "input_shape", "summary", "inspected_at", "created_at",
            "latest_inspection", "graph_url",
        ]  # fmt: skip
        read_only_fields = fields

    def get_latest_inspection(self, obj: Architecture) -> int | None:
        return obj.latest_inspection_id


class TensorSerializer(serializers.Serializer):
    """One parameter tensor of an inspected architecture."""

    name = serializers.CharField()
    shape = serializers.ListField(child=serializers.IntegerField(min_value=0))
    dtype = serializers.CharField(help_text='e.g. "float32"')
    numel = serializers.IntegerField(min_value=0)


class ZooEntrySerializer(serializers.Serializer):
    """A model the built-in zoo can build, and the arguments it takes."""

    name = serializers.CharField()
    family = serializers.CharField()
    task = serializers.CharField()
    description = serializers.CharField()
    input_shape = serializers.ListField(child=serializers.IntegerField())
    input_dtype = serializers.CharField()
    default_args = serializers.DictField(help_text="The arguments used when none are given.")
    args = serializers.DictField(help_text="Each argument's type, bounds and help text.")
    num_params = serializers.IntegerField(help_text="With the default arguments.")


class ZooSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = ZooEntrySerializer(many=True)


class ArchitectureLabelsSerializer(serializers.Serializer):
    """Change a model's name, tags or notes (PATCH); fields left out stay as they are."""

    name = serializers.CharField(max_length=NAME_LENGTH, required=False)
    tags = TagsField()
    notes = serializers.CharField(max_length=NOTES_LENGTH, required=False, allow_blank=True)


class ArchitectureCreateSerializer(serializers.Serializer):
    """Add an architecture: ``source=zoo`` with ``zoo_name`` (+ ``zoo_args``), or a file."""

    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    source = serializers.ChoiceField(choices=Architecture.Source.choices)
    zoo_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    zoo_args = JSONObjectField(required=False)
    file = serializers.FileField(required=False, allow_empty_file=True)
    weights = serializers.FileField(
        required=False, allow_empty_file=True,
        help_text="With source=hf_config: a .safetensors file of the model's weights, stored as "
        "a checkpoint of the new architecture.",
    )  # fmt: skip
    tags = TagsField()
    notes = serializers.CharField(max_length=NOTES_LENGTH, required=False, allow_blank=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["source"] == Architecture.Source.ZOO:
            if not attrs.get("zoo_name"):
                raise serializers.ValidationError({"zoo_name": "Pick a zoo model by name."})
        elif not attrs.get("file"):
            raise serializers.ValidationError({"file": "Attach the model file."})
        return attrs
