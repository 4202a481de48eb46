from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.checkpoints.api.serializers import (
    CheckpointCreateSerializer,
    CheckpointDetailSerializer,
    CheckpointSerializer,
)
from webapp.checkpoints.models import Checkpoint, create_checkpoint
from webapp.core.api import OwnedDeletableViewSet
from webapp.core.api_errors import upload_error_response
from webapp.core.files import UploadError, stored_file_response
from webapp.core.schema import conflict


class CheckpointViewSet(OwnedDeletableViewSet):
    """Your checkpoints. Pickles that would need full unpickling are refused on upload."""

    queryset = Checkpoint.objects.all()
    serializer_class = CheckpointSerializer

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
        return CheckpointDetailSerializer if self.action == "retrieve" else CheckpointSerializer

    @extend_schema(
        request=CheckpointCreateSerializer,
        responses={
            201: CheckpointDetailSerializer,
            409: conflict("You already have this file; `existing` is its URL."),
        },
    )
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        form = CheckpointCreateSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            checkpoint = create_checkpoint(
                request.user, data.get("name", ""), data["file"], data.get("architecture")
            )
        except UploadError as error:
            return upload_error_response(error)
        body = CheckpointDetailSerializer(checkpoint, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Checkpoint) -> None:
        instance.delete()  # its files follow on commit (webapp.core.cleanup)

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The checkpoint file"
            )
        }
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        checkpoint = self.get_object()  # the owner check comes first, whatever the storage
        suffix = checkpoint.file.name.rsplit(".", 1)[-1]
        return stored_file_response(
            checkpoint.file,
            content_type="application/octet-stream",
            filename=f"{checkpoint.name}.{suffix}"
            if not checkpoint.name.endswith(suffix)
            else checkpoint.name,
        )
