from __future__ import annotations

from rest_framework import serializers

from webapp.datasets.models import Dataset


class DatasetSerializer(serializers.ModelSerializer):
    """An uploaded data set and what its check found."""

    url = serializers.HyperlinkedIdentityField(view_name="api-dataset-detail")

    class Meta:
        model = Dataset
        fields = ["id", "url", "name", "format", "task", "file_bytes", "sha256", "summary",
                  "created_at"]  # fmt: skip
        read_only_fields = fields


class DatasetCreateSerializer(serializers.Serializer):
    """Upload a ``.zip`` of class folders of PNG/JPEG images (``<class>/<image>.png``, optionally
    under ``train/`` and ``test/``), a ``.npz`` (arrays ``x``, ``y``) or a UTF-8 ``.txt`` file."""

    file = serializers.FileField(allow_empty_file=True)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
