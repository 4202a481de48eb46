from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.core.api import OwnedDeletableViewSet
from webapp.core.api_errors import upload_error_response
from webapp.core.files import UploadError
from webapp.core.schema import conflict
from webapp.datasets.api.serializers import DatasetCreateSerializer, DatasetSerializer
from webapp.datasets.models import Dataset, create_dataset
from workers.catalog import ACCELERATORS, DATASETS


class DatasetViewSet(OwnedDeletableViewSet):
    """Your uploaded data sets; built-in ones are listed under ``/api/v1/datasets/builtin/``."""

    queryset = Dataset.objects.all()
    serializer_class = DatasetSerializer

    @extend_schema(
        request=DatasetCreateSerializer,
        responses={
            201: DatasetSerializer,
            409: conflict("You already have this file; `existing` is its URL."),
        },
    )
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        form = DatasetCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            dataset = create_dataset(
                request.user, form.validated_data.get("name", ""), form.validated_data["file"]
            )
        except UploadError as error:
            return upload_error_response(error)
        body = DatasetSerializer(dataset, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Dataset) -> None:
        instance.delete()  # its files follow on commit (webapp.core.cleanup)


class NamedSerializer(serializers.Serializer):
    """A name to use in a job's parameters, and what it stands for."""

    name = serializers.CharField()
    description = serializers.CharField()


class BuiltinDatasetsView(APIView):
    """The data sets a worker can load by name (those marked "downloaded on first use" need
    internet on the worker), and the accelerators a train job can use."""

    @extend_schema(
        responses={
            200: inline_serializer(
                "BuiltinDatasets",
                {
                    "datasets": NamedSerializer(many=True),
                    "accelerators": NamedSerializer(many=True),
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "datasets": [
                    {"name": d.name, "description": d.description} for d in DATASETS.values()
                ],
                "accelerators": [
                    {"name": a.name, "description": a.label} for a in ACCELERATORS.values()
                ],
            }
        )
