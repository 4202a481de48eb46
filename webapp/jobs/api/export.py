"""CSV answers for the metric and comparison exports, and the shapes the schema documents."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer

from webapp.jobs.charts import rows_csv

POINT_COLUMNS = ("series", "step", "value", "recorded_at")


class CSVRenderer(BaseRenderer):
    """Rows (a list of dicts, or ``{"points": rows}`` / ``{"results": rows}``) as CSV text;
    an error body (``{"detail": ...}``) becomes a one-row CSV with that column."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        columns: tuple[str, ...] | None = None
        if isinstance(data, dict) and "points" in data:
            columns, data = POINT_COLUMNS, data["points"]
        elif isinstance(data, dict) and "results" in data:
            data = data["results"]
        elif isinstance(data, dict):
            data = [data]
        return rows_csv(data or [], columns).encode(self.charset)


EXPORT_RENDERERS = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]


class MetricPointSerializer(serializers.Serializer):
    series = serializers.CharField()
    step = serializers.IntegerField()
    value = serializers.FloatField(allow_null=True, help_text="null for NaN or infinity")
    recorded_at = serializers.DateTimeField(allow_null=True)


class MetricPointsSerializer(serializers.Serializer):
    """Every metric point of a job (``?format=csv``: the same rows as CSV)."""

    job = serializers.IntegerField()
    points = MetricPointSerializer(many=True)


class ComparedJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    model = serializers.CharField(allow_null=True)
    checkpoint = serializers.IntegerField(allow_null=True)
    parameters = serializers.DictField()


class ComparisonSerializer(serializers.Serializer):
    """A comparison of your jobs (``?format=csv``: the results rows as CSV)."""

    jobs = ComparedJobSerializer(many=True)
    targets = serializers.ListField(child=serializers.FloatField())
    loss_target = serializers.FloatField(allow_null=True)
    test_metric = serializers.CharField(allow_null=True)
    not_found = serializers.ListField(
        child=serializers.IntegerField(), help_text="Asked-for ids that are not your jobs."
    )
    results = serializers.ListField(
        child=serializers.DictField(),
        help_text="One row per run of each job: job, name, run, model, steps, final_test, "
        "best_test, final_loss, nowcasts, and per target 'steps to <target>' and "
        "'speed-up <target>' (over the first run).",
    )
