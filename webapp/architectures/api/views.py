from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.architectures.api.serializers import (
    ArchitectureCreateSerializer,
    ArchitectureLabelsSerializer,
    ArchitectureSerializer,
    TensorSerializer,
    ZooSerializer,
)
from webapp.architectures.models import (
    Architecture,
    create_from_upload,
    create_from_zoo,
    with_latest_inspection,
)
from webapp.core.api import OwnedDeletableViewSet
from webapp.core.api_errors import upload_error_response
from webapp.core.files import UploadError
from webapp.core.labels import with_tag
from webapp.core.schema import conflict, error
from webapp.jobs.api.serializers import JobSerializer
from webapp.jobs.models import Job
from workers.catalog.models import load_catalog

NOT_INSPECTED = error("No such architecture among yours, or it has not been inspected yet.")


class ArchitectureViewSet(OwnedDeletableViewSet):
    """Your architectures: zoo entries, ``torch.export`` archives and (if enabled) sources."""

    queryset = Architecture.objects.all()
    serializer_class = ArchitectureSerializer

    def get_queryset(self) -> QuerySet:
        queryset = with_latest_inspection(super().get_queryset())
        tag = self.request.query_params.get("tag") if self.action == "list" else None
        return with_tag(queryset, tag) if tag else queryset

    @extend_schema(
        parameters=[OpenApiParameter("tag", str, description="Only models with this tag")]
    )
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=ArchitectureCreateSerializer,
        responses={
            201: ArchitectureSerializer,
            409: conflict("You already have this model; `existing` is its URL."),
        },
    )
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        form = ArchitectureCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            if data["source"] == Architecture.Source.ZOO:
                architecture = create_from_zoo(
                    request.user, data.get("name", ""), data["zoo_name"], data.get("zoo_args")
                )
            else:
                architecture = create_from_upload(
                    request.user, data.get("name", ""), data["source"], data["file"],
                    weights=data.get("weights"),
                )  # fmt: skip
        except UploadError as error:
            return upload_error_response(error)
        architecture.set_labels(tags=data.get("tags"), notes=data.get("notes"))
        body = ArchitectureSerializer(architecture, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 409: conflict("The architecture has jobs still running.")})
    def destroy(self, request: Request, *args: object, **kwargs: object) -> Response:
        architecture = self.get_object()
        try:
            architecture.remove()  # its files follow on commit (webapp.core.cleanup)
        except ValueError as refusal:
            return Response({"detail": str(refusal)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=ArchitectureLabelsSerializer,
        responses={200: ArchitectureSerializer, 400: error("A tag or the name is not valid.")},
    )
    def partial_update(self, request: Request, *args: object, **kwargs: object) -> Response:
        """Change the model's name, tags or notes."""
        architecture = self.get_object()
        form = ArchitectureLabelsSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        architecture.set_labels(**form.validated_data)
        body = ArchitectureSerializer(architecture, context=self.get_serializer_context()).data
        return Response(body)

    @extend_schema(request=None, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def inspect(self, request: Request, pk: str | None = None) -> Response:
        """Start an inspect job on this architecture."""
        job = Job.submit(owner=request.user, kind="inspect", architecture=self.get_object())
        return Response(
            JobSerializer(job, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )

    def _latest_artifact_json(self, name: str) -> Response:
        job = self.get_object().latest_inspection()
        artifact = job.artifacts.filter(name=name).first() if job else None
        if artifact is None:
            raise NotFound("Not inspected yet: start an inspect job on this architecture.")
        return Response(artifact.read_json())

    @extend_schema(responses={200: dict, 404: NOT_INSPECTED})
    @action(detail=True, methods=["get"])
    def graph(self, request: Request, pk: str | None = None) -> Response:
        """The architecture graph (GHN primitives, data flow, module paths) of the latest
        inspection."""
        return self._latest_artifact_json("arch_graph.json")

    @extend_schema(responses={200: dict, 404: NOT_INSPECTED})
    @action(detail=True, methods=["get"], url_path="param-graph", url_name="param-graph")
    def param_graph(self, request: Request, pk: str | None = None) -> Response:
        """The parameter graph NiNo reads: counts, and for small models every edge."""
        return self._latest_artifact_json("param_graph.json")

    @extend_schema(responses={200: TensorSerializer(many=True), 404: NOT_INSPECTED})
    @action(detail=True, methods=["get"], pagination_class=None)
    def tensors(self, request: Request, pk: str | None = None) -> Response:
        """The parameter tensors (name, shape, dtype, numel) from the latest inspect job."""
        return self._latest_artifact_json("tensors.json")


class ZooView(APIView):
    """Every model the built-in zoo can build: all torchvision classifiers and our families."""

    @extend_schema(
        parameters=[OpenApiParameter("family", str, description="Only this family's models")],
        responses={200: ZooSerializer},
    )
    def get(self, request: Request) -> Response:
        entries = load_catalog()
        family = request.query_params.get("family")
        if family:
            entries = [entry for entry in entries if entry["family"] == family]
        return Response({"count": len(entries), "results": entries})
