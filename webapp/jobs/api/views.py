from __future__ import annotations

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.core.api import OwnedViewSet
from webapp.core.files import stored_file_response
from webapp.core.labels import with_tag
from webapp.core.schema import conflict, error
from webapp.jobs import charts
from webapp.jobs.api.export import (
    EXPORT_RENDERERS,
    ComparisonSerializer,
    MetricPointsSerializer,
)
from webapp.jobs.api.serializers import (
    ArtifactSerializer,
    JobCreateSerializer,
    JobLabelsSerializer,
    JobSerializer,
)
from webapp.jobs.kinds import KINDS
from webapp.jobs.kinds.predict import ghn_descriptions
from webapp.jobs.models import Job, downsample

MAX_METRIC_POINTS = 5000


class MetricsSerializer(serializers.Serializer):
    """A job's metric series."""

    job = serializers.IntegerField()
    series = serializers.DictField(
        child=serializers.ListField(
            child=serializers.ListField(
                child=serializers.FloatField(allow_null=True), min_length=2, max_length=2
            )
        ),
        help_text="Each series as [[step, value], ...], thinned to max_points; a NaN or "
        "infinite value is null.",
    )
    points = serializers.DictField(
        child=serializers.IntegerField(), help_text="Each series' length before thinning."
    )
    downsampled = serializers.BooleanField(help_text="Whether any series was thinned.")


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "status", enum=list(Job.Status.values), description="Only this status"
            ),
            OpenApiParameter("kind", enum=list(KINDS), description="Only this kind"),
            OpenApiParameter("architecture", int, description="Only jobs on this architecture"),
            OpenApiParameter("tag", str, description="Only jobs with this tag"),
        ],
        responses={200: JobSerializer(many=True), 400: error("A filter value is not valid.")},
    )
)
class JobViewSet(OwnedViewSet):
    """Your jobs. Create one (with a name, tags and notes), poll it, cancel or retry it, read
    its metrics and artifacts; PATCH its name, tags or notes; delete it once it has ended."""

    queryset = Job.objects.all()
    serializer_class = JobSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        queryset = super().get_queryset().prefetch_related("artifacts")
        if self.action != "list":
            return queryset
        for field in ("status", "kind", "architecture"):
            value = self.request.query_params.get(field)
            if value:
                if field == "architecture":
                    try:
                        value = int(value)
                    except ValueError:
                        raise ParseError("architecture must be an architecture id.") from None
                queryset = queryset.filter(**{field: value})
        tag = self.request.query_params.get("tag")
        if tag:
            queryset = with_tag(queryset, tag)
        return queryset

    @extend_schema(
        request=JobLabelsSerializer,
        responses={200: JobSerializer, 400: error("A tag is not valid.")},
    )
    def partial_update(self, request: Request, *args: object, **kwargs: object) -> Response:
        """Change the job's name, tags or notes (nothing else of a job changes)."""
        job = self.get_object()
        form = JobLabelsSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job.set_labels(**form.validated_data)
        return Response(JobSerializer(job, context={"request": request}).data)

    @extend_schema(responses={204: None, 409: conflict("The job is still queued or running.")})
    def destroy(self, request: Request, *args: object, **kwargs: object) -> Response:
        """Delete an ended job with its metrics and artifacts (cancel an active one first)."""
        job = self.get_object()
        try:
            job.remove()
        except ValueError as refusal:
            return Response({"detail": str(refusal)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=JobCreateSerializer,
        responses={201: JobSerializer},
    )
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        form = JobCreateSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        job = Job.submit(owner=request.user, **form.validated_data)
        return Response(JobSerializer(job, context={"request": request}).data, status=201)

    @extend_schema(
        request=None,
        responses={200: JobSerializer, 409: conflict("The job has already ended.")},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel now if queued; ask the worker to stop (it saves what it has) if running."""
        job = self.get_object()
        if not job.request_cancel():
            return Response(
                {"detail": f"The job has already ended ({job.status}); nothing to cancel."},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(JobSerializer(job, context={"request": request}).data)

    @extend_schema(
        request=None,
        responses={201: JobSerializer, 409: conflict("Only failed or cancelled jobs retry.")},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Submit a fresh copy of a failed or cancelled job."""
        job = self.get_object()
        if not job.can_retry:
            detail = f"Only failed or cancelled jobs can be retried; this one is {job.status}."
            return Response({"detail": detail}, status=status.HTTP_409_CONFLICT)
        new = job.retry()
        return Response(JobSerializer(new, context={"request": request}).data, status=201)

    @extend_schema(
        parameters=[
            OpenApiParameter("series", str, description="Only this series (repeatable)", many=True),
            OpenApiParameter(
                "max_points",
                int,
                description=f"Thin each series to this many points "
                f"(default and maximum {MAX_METRIC_POINTS})",
            ),
        ],
        responses={
            (200, "application/json"): MetricsSerializer,
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="With ?format=csv: every point, columns series, step, value, "
                "recorded_at"
            ),
            400: error("max_points is not an integer."),
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=EXPORT_RENDERERS)
    def metrics(
        self, request: Request, pk: str | None = None, format: str | None = None
    ) -> Response:
        """Metric series as ``{name: [[step, value], ...]}``; thinned only when asked or huge.
        ``?format=csv`` (or ``metrics.csv``) answers every point as CSV rows instead."""
        job = self.get_object()
        if request.accepted_renderer.format == "csv":
            return Response({"job": job.pk, "points": job.metric_rows()})
        try:
            max_points = int(request.query_params.get("max_points", MAX_METRIC_POINTS))
        except ValueError:
            return Response({"detail": "max_points must be an integer."}, status=400)
        max_points = min(max(max_points, 2), MAX_METRIC_POINTS)
        full = job.metric_series()
        wanted = request.query_params.getlist("series")
        if wanted:
            full = {name: points for name, points in full.items() if name in wanted}
        series = {name: downsample(points, max_points) for name, points in full.items()}
        return Response(
            {
                "job": job.pk,
                "series": charts.json_safe(series),  # a diverged NaN is null, as JSON allows
                "points": {name: len(points) for name, points in full.items()},
                "downsampled": any(len(series[n]) < len(full[n]) for n in full),
            }
        )

    @extend_schema(
        responses={
            (200, "application/json"): MetricPointsSerializer,
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="The same rows as CSV: series, step, value, recorded_at"
            ),
        }
    )
    @action(detail=True, methods=["get"], renderer_classes=EXPORT_RENDERERS)
    def points(
        self, request: Request, pk: str | None = None, format: str | None = None
    ) -> Response:
        """Every metric point as rows ``{series, step, value, recorded_at}`` (never thinned);
        ``?format=csv`` for CSV."""
        job = self.get_object()
        return Response({"job": job.pk, "points": charts.json_safe(job.metric_rows())})

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "ids", str, many=True, required=True,
                description="Job ids, comma-separated or repeated (?ids=3,5 or ?ids=3&ids=5)",
            ),
            OpenApiParameter("targets", str, description="Test-metric targets, e.g. 0.7,0.8"),
            OpenApiParameter("loss", float, description="A train-loss target (smoothed)"),
        ],
        responses={
            (200, "application/json"): ComparisonSerializer,
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="The results rows as CSV"
            ),
            404: error("None of the ids is one of your jobs."),
        },
    )  # fmt: skip
    @action(detail=False, methods=["get"], renderer_classes=EXPORT_RENDERERS,
            pagination_class=None)  # fmt: skip
    def compare(self, request: Request, format: str | None = None) -> Response:
        """Compare your jobs: parameters, final metrics, steps to targets and speed-ups over
        the first one. Other people's jobs are left out (listed in ``not_found``)."""
        query = request.query_params
        data, left_out, _ = charts.comparison_of(
            request.user, query.getlist("ids"), query.get("targets"), query.get("loss")
        )
        if data is None:
            raise NotFound("None of these ids is one of your jobs.")
        rows = charts.comparison_rows(data)
        return Response(charts.compare_json(data, rows, left_out))

    @extend_schema(responses={200: ArtifactSerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None)
    def artifacts(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        return Response(
            ArtifactSerializer(job.artifacts.all(), many=True, context={"request": request}).data
        )

    @extend_schema(
        responses={200: OpenApiResponse(description="The artifact file, in its stored type")}
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"artifacts/(?P<artifact_id>\d+)/download",
        url_name="artifact-download",
    )
    def download(
        self, request: Request, pk: str | None = None, artifact_id: str = ""
    ) -> FileResponse:
        job = self.get_object()  # the owner check comes first, whatever the storage
        artifact = get_object_or_404(job.artifacts, pk=artifact_id)
        return stored_file_response(
            artifact.file, filename=artifact.name, content_type=artifact.content_type
        )


class GHNsView(APIView):
    """The hypernetworks a predict job can use (``parameters.ghn``), "ours" first."""

    @extend_schema(
        responses={
            200: inline_serializer(
                "GHNs",
                {
                    "ghns": inline_serializer(
                        "GHN",
                        {"name": serializers.CharField(), "description": serializers.CharField()},
                        many=True,
                    )
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        return Response(
            {"ghns": [{"name": k, "description": v} for k, v in ghn_descriptions().items()]}
        )
