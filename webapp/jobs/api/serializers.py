from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.architectures.models import Architecture
from webapp.checkpoints.models import Checkpoint
from webapp.core.api import JSONObjectField
from webapp.core.labels import NAME_LENGTH, NOTES_LENGTH, TagsField
from webapp.jobs.kinds import KINDS, clean_parameters
from webapp.jobs.models import Artifact, Job


class ArtifactSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = ["id", "kind", "name", "bytes", "sha256", "content_type", "created_at",
                  "download_url"]  # fmt: skip
        read_only_fields = fields

    def get_download_url(self, obj: Artifact) -> str:
        from django.urls import reverse

        path = reverse("api-job-artifact-download", args=[obj.job_id, obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class JobSerializer(serializers.ModelSerializer):
    """A job: its status machine fields are read-only; change them with the actions."""

    url = serializers.HyperlinkedIdentityField(view_name="api-job-detail")
    artifacts = ArtifactSerializer(many=True, read_only=True)
    tags = TagsField(read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "url", "name", "tags", "notes", "kind", "status", "progress", "message",
            "error", "parameters", "result", "architecture", "checkpoint", "retry_of",
            "cancel_requested", "worker", "created_at", "started_at", "finished_at", "artifacts",
        ]  # fmt: skip
        read_only_fields = fields


class JobLabelsSerializer(serializers.Serializer):
    """Change a job's name, tags or notes (PATCH); fields left out stay as they are."""

    name = serializers.CharField(max_length=NAME_LENGTH, required=False, allow_blank=True)
    tags = TagsField()
    notes = serializers.CharField(max_length=NOTES_LENGTH, required=False, allow_blank=True)


class JobCreateSerializer(serializers.Serializer):
    """Start a job of ``kind`` on your architecture (and checkpoint, for kinds that use one)."""

    kind = serializers.ChoiceField(choices=[(k.name, k.label) for k in KINDS.values()])
    architecture = serializers.PrimaryKeyRelatedField(
        queryset=Architecture.objects.none(), required=False, allow_null=True
    )
    checkpoint = serializers.PrimaryKeyRelatedField(
        queryset=Checkpoint.objects.none(), required=False, allow_null=True
    )
    parameters = JSONObjectField(
        required=False,
        help_text="The kind's parameters (see the kind); leaving them out or null means {}.",
    )
    name = serializers.CharField(
        max_length=NAME_LENGTH, required=False, allow_blank=True,
        help_text="What you call this run (shown on the dashboard and searched).",
    )  # fmt: skip
    tags = TagsField()
    notes = serializers.CharField(max_length=NOTES_LENGTH, required=False, allow_blank=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            # Someone else's object is simply "not found", like everywhere else.
            self.fields["architecture"].queryset = Architecture.objects.filter(owner=request.user)
            self.fields["checkpoint"].queryset = Checkpoint.objects.filter(owner=request.user)

    def validate_parameters(self, value: Any) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise serializers.ValidationError("Expected a JSON object.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = KINDS[attrs["kind"]]
        if kind.needs_architecture and not attrs.get("architecture"):
            raise serializers.ValidationError(
                {"architecture": f"A {kind.name} job needs an architecture."}
            )
        if kind.needs_checkpoint and not attrs.get("checkpoint"):
            raise serializers.ValidationError(
                {"checkpoint": f"A {kind.name} job needs a checkpoint."}
            )
        request = self.context.get("request")
        try:
            # With the architecture, the kind's checks run too (webapp.jobs.checks): a job
            # that would fail on the worker is refused here with the sentence.
            attrs["parameters"] = clean_parameters(
                kind.name, attrs.get("parameters"), request.user if request else None,
                attrs.get("architecture"),
            )  # fmt: skip
        except serializers.ValidationError as error:
            raise serializers.ValidationError({"parameters": error.detail}) from None
        return attrs
