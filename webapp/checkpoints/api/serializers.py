from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.architectures.models import Architecture
from webapp.checkpoints.models import Checkpoint


class CheckpointSerializer(serializers.ModelSerializer):
    """A checkpoint as the API shows it (the tensor list only on the detail view)."""

    url = serializers.HyperlinkedIdentityField(view_name="api-checkpoint-detail")
    download_url = serializers.HyperlinkedIdentityField(view_name="api-checkpoint-download")

    class Meta:
        model = Checkpoint
        fields = [
            "id", "url", "download_url", "name", "format", "num_tensors", "num_elements",
            "file_bytes", "sha256", "architecture", "metadata", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class CheckpointDetailSerializer(CheckpointSerializer):
    class Meta(CheckpointSerializer.Meta):
        fields = [*CheckpointSerializer.Meta.fields, "tensors"]
        read_only_fields = fields


class CheckpointCreateSerializer(serializers.Serializer):
    """Upload a ``.safetensors`` or weights-only ``.pt``/``.pth`` file."""

    file = serializers.FileField(allow_empty_file=True)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    architecture = serializers.PrimaryKeyRelatedField(
        queryset=Architecture.objects.none(), required=False, allow_null=True
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["architecture"].queryset = Architecture.objects.filter(owner=request.user)
