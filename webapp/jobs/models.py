"""Jobs, their metric series and their artifacts.

A ``Job`` row is the source of truth for work done on a worker. The web tier creates it and
sends only its primary key to Celery after the transaction commits; the worker claims it with a
conditional update so a re-delivered message does nothing; every status change goes through
:meth:`Job.update_status`, which only moves along the status machine.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from webapp.core.labels import Labelled
from webapp.jobs.kinds import KINDS, get_kind

# How much of a failed job's error a list loads (the row's hover text); the page shows it all.
ERROR_HEAD = 1000


def with_error_head(queryset: models.QuerySet) -> models.QuerySet:
    """``queryset`` of jobs annotated with the start of their error (``error_head``), so a
    list can show failure reasons while deferring the full column."""
    from django.db.models.functions import Substr

    return queryset.annotate(error_head=Substr("error", 1, ERROR_HEAD))


class QueueUnavailable(Exception):
    """The broker could not take a job's message; the site answers 503 with this sentence."""


class JobQuerySet(models.QuerySet):
    def active(self) -> JobQuerySet:
        return self.filter(status__in=Job.ACTIVE_STATUSES)

    def terminal(self) -> JobQuerySet:
        return self.filter(status__in=Job.TERMINAL_STATUSES)


class Job(Labelled, models.Model):
    """One unit of work on a worker: inspect, train or predict (see ``webapp.jobs.kinds``).

    Status machine: ``queued → running → succeeded | failed | cancelled``; a queued job can
    also be cancelled or failed directly. ``progress`` is 0..1 and ``message`` is the human
    one-liner shown while it runs; ``error`` holds the reason when it failed.
    """

    labels_route, delete_route = "job-labels", "job-delete"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATUSES = frozenset({Status.QUEUED, Status.RUNNING})
    TERMINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.QUEUED: frozenset({Status.RUNNING, Status.FAILED, Status.CANCELLED}),
        Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}),
    }

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=32, choices=[(k.name, k.label) for k in KINDS.values()])
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    # What the person calls the run, tags to find it by (stored as ",a,b," so that one
    # portable `icontains ",tag,"` finds a tag on SQLite and PostgreSQL alike) and free notes.
    name = models.CharField(max_length=200, blank=True)
    tags = models.CharField(max_length=500, blank=True, db_index=True)
    notes = models.TextField(blank=True)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    architecture = models.ForeignKey(
        "architectures.Architecture",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="jobs",
    )
    checkpoint = models.ForeignKey(
        "checkpoints.Checkpoint",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="jobs",
    )
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1),
                name="job_progress_between_0_and_1",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} job #{self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("job-detail", args=[self.pk])

    # --- reading -----------------------------------------------------------------------------
    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL_STATUSES

    @property
    def failure_reason(self) -> str:
        """The first line of ``error`` (a dashboard row shows it; the page, all of it).

        Reads ``error_head`` when a list annotated it (``with_error_head``) instead of loading
        whole tracebacks.
        """
        text = self.__dict__.get("error_head")
        if text is None:
            text = self.error
        return next((line.strip() for line in text.splitlines() if line.strip()), "")

    @property
    def error_preview(self) -> str:
        """The start of ``error`` for a hover text, marked when it was cut."""
        text = self.__dict__.get("error_head")
        if text is None:
            text = self.error[:ERROR_HEAD]
        return text + "…" if len(text) >= ERROR_HEAD else text

    def delete_refusal(self) -> str:
        """Why this job cannot be deleted now, or ``""`` when it can."""
        if self.is_active:
            return (
                f"Job #{self.pk} is still {self.status}; cancel it first, then delete it "
                "once it has stopped."
            )
        return ""

    def remove(self) -> None:
        """Delete an ended job with its metrics and artifacts (their files go on commit,
        ``webapp.core.cleanup``); ``ValueError`` with the reason for an active one."""
        refusal = self.delete_refusal()
        if refusal:
            raise ValueError(refusal)
        self.delete()

    @property
    def can_retry(self) -> bool:
        return self.status in {self.Status.FAILED, self.Status.CANCELLED}

    @property
    def percent(self) -> int:
        return round(self.progress * 100)

    @property
    def kind_info(self) -> Any:
        """The kind's registry entry (label, template, form …)."""
        return get_kind(self.kind)

    @property
    def duration(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    # --- creating ----------------------------------------------------------------------------
    @classmethod
    def submit(
        cls,
        *,
        owner: Any,
        kind: str,
        architecture: Any = None,
        checkpoint: Any = None,
        parameters: dict | None = None,
        retry_of: Job | None = None,
        name: str = "",
        tags: str = "",
        notes: str = "",
    ) -> Job:
        """Create a queued job and send its id to Celery once the transaction commits.

        ``tags`` is the stored form (``webapp.core.labels.normalise_tags``).
        """
        with transaction.atomic():
            job = cls.objects.create(
                owner=owner,
                kind=kind,
                architecture=architecture,
                checkpoint=checkpoint,
                parameters=parameters or {},
                retry_of=retry_of,
                name=name,
                tags=tags,
                notes=notes,
                message="Waiting for a worker",
            )
            transaction.on_commit(job.enqueue)
        return job

    def enqueue(self) -> None:
        """Send this job's primary key (and nothing else) to the kind's queue.

        When the broker cannot be reached the job is failed with the reason (so no row waits
        ``queued`` for a message that was never sent; Retry sends a fresh one) and
        :class:`QueueUnavailable` is raised, which the site answers with a 503.
        """
        from workers.celery import app

        kind = get_kind(self.kind)
        try:
            # Retries are short (CELERY_TASK_PUBLISH_RETRY_POLICY): a person is waiting.
            app.send_task(kind.task, args=[self.pk], queue=kind.queue)
        except Exception as error:  # noqa: BLE001 - kombu raises many kinds; all mean "not sent"
            self.fail(
                "The job queue could not be reached, so this job was never started "
                f"({type(error).__name__}). Retry it once the service is back."
            )
            raise QueueUnavailable(
                "The job queue is unavailable right now; the job was not started. "
                "Please try again in a minute."
            ) from error

    def retry(self) -> Job:
        """Submit a fresh copy of a failed or cancelled job."""
        if not self.can_retry:
            raise ValueError(
                f"Only failed or cancelled jobs can be retried; this one is {self.status}."
            )
        return Job.submit(
            owner=self.owner,
            kind=self.kind,
            architecture=self.architecture,
            checkpoint=self.checkpoint,
            parameters=self.parameters,
            retry_of=self,
            # A retry is the same run once more: it keeps what the person called it.
            name=self.name,
            tags=self.tags,
            notes=self.notes,
        )

    # --- the status machine ------------------------------------------------------------------
    def update_status(self, new: str, **fields: Any) -> bool:
        """Move to ``new`` if the machine allows it from the *stored* status; return success.

        The update is conditional in SQL, so two processes racing (a cancel and a finish, or a
        re-delivered message) cannot both win.
        """
        sources = [old for old, targets in self.TRANSITIONS.items() if new in targets]
        now = timezone.now()
        values: dict[str, Any] = {"status": new, "updated_at": now, **fields}
        if new == self.Status.RUNNING:
            values.setdefault("started_at", now)
        if new in self.TERMINAL_STATUSES:
            values.setdefault("finished_at", now)
        if new == self.Status.SUCCEEDED:
            values.setdefault("progress", 1.0)
        changed = Job.objects.filter(pk=self.pk, status__in=sources).update(**values)
        self.refresh_from_db()
        return bool(changed)

    def claim(self, worker: str) -> bool:
        """Take a queued job for ``worker``; False when someone else has (or it was cancelled)."""
        return self.update_status(self.Status.RUNNING, worker=worker, message="Started")

    def set_progress(self, progress: float, message: str = "") -> bool:
        """Record progress of a running job; return whether the user asked to cancel it."""
        values: dict[str, Any] = {"progress": min(max(progress, 0.0), 1.0)}
        if message:
            values["message"] = message[:500]
        Job.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
            updated_at=timezone.now(), **values
        )
        self.refresh_from_db(fields=["progress", "message", "cancel_requested", "status"])
        return self.cancel_requested

    def succeed(self, message: str = "Done", result: dict | None = None) -> bool:
        """Finish successfully; the kind's follow-up (e.g. "then train") runs once, on commit."""
        done = self.update_status(self.Status.SUCCEEDED, message=message, result=result or {})
        follow_up = get_kind(self.kind).on_succeeded
        if done and follow_up is not None:
            transaction.on_commit(lambda: follow_up(self))
        return done

    def add_result(self, **values: Any) -> None:
        """Add keys to the stored result (a follow-up's link, say) without touching the rest."""
        self.result = {**self.result, **values}
        Job.objects.filter(pk=self.pk).update(result=self.result, updated_at=timezone.now())

    def fail(self, error: str, message: str = "Failed") -> bool:
        return self.update_status(self.Status.FAILED, message=message, error=error[:20000])

    def mark_cancelled(self, message: str = "Cancelled") -> bool:
        return self.update_status(self.Status.CANCELLED, message=message)

    def request_cancel(self) -> bool:
        """Cancel: at once when still queued, cooperatively (the worker stops) when running."""
        if self.status == self.Status.QUEUED and self.update_status(
            self.Status.CANCELLED, cancel_requested=True, message="Cancelled before it started"
        ):
            return True
        changed = Job.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
            cancel_requested=True, message="Cancel requested", updated_at=timezone.now()
        )
        self.refresh_from_db()
        return bool(changed)

    @classmethod
    def fail_orphans(cls, worker: str, reason: str) -> int:
        """Fail the running jobs a worker had when it died or restarted; return how many."""
        now = timezone.now()
        return cls.objects.filter(status=cls.Status.RUNNING, worker=worker).update(
            status=cls.Status.FAILED,
            error=reason,
            message="Failed",
            finished_at=now,
            updated_at=now,
        )

    # --- metrics and artifacts ---------------------------------------------------------------
    def record_metrics(self, series: str, points: Iterable[tuple[int, float]]) -> None:
        """Store ``(step, value)`` points; an existing step is overwritten, never duplicated."""
        now = timezone.now()
        rows = [
            MetricPoint(job=self, series=series, step=s, value=float(v), recorded_at=now)
            for s, v in points
        ]
        MetricPoint.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["job", "series", "step"],
            update_fields=["value", "recorded_at"],
        )

    def metric_series(self, max_points: int | None = None) -> dict[str, list[list[float]]]:
        """All series as ``{name: [[step, value], ...]}``, evenly thinned to ``max_points``."""
        series: dict[str, list[list[float]]] = {}
        for name, step, value in self.metrics.order_by("series", "step").values_list(
            "series", "step", "value"
        ):
            series.setdefault(name, []).append([step, value])
        if max_points:
            series = {name: downsample(points, max_points) for name, points in series.items()}
        return series

    METRIC_COLUMNS = ("series", "step", "value", "recorded_at")

    def metric_rows(self) -> list[dict[str, Any]]:
        """Every metric point, ``{series, step, value, recorded_at}``, by series then step;
        ``recorded_at`` is ISO 8601 (None for points stored before times were kept)."""
        return [
            {"series": name, "step": step, "value": value,
             "recorded_at": recorded.isoformat() if recorded else None}
            for name, step, value, recorded in self.metrics.order_by("series", "step")
            .values_list(*self.METRIC_COLUMNS)
        ]  # fmt: skip

    def metrics_csv(self) -> str:
        """Every metric point as CSV text with the columns of :meth:`metric_rows`."""
        import csv
        import io

        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.METRIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.metric_rows())
        return out.getvalue()

    @property
    def queue(self) -> str:
        """The Celery queue the job's kind runs on ("cpu" or "gpu")."""
        return get_kind(self.kind).queue

    def queue_position(self) -> int | None:
        """1 when nothing is ahead of this queued job: one more than the jobs of the same
        queue (any owner's: they share the workers) created before it and still queued or
        running. None once the job is no longer queued."""
        if self.status != self.Status.QUEUED:
            return None
        kinds = [kind.name for kind in KINDS.values() if kind.queue == self.queue]
        earlier = models.Q(created_at__lt=self.created_at) | models.Q(
            created_at=self.created_at, pk__lt=self.pk
        )
        ahead = Job.objects.active().filter(earlier, kind__in=kinds).count()
        return ahead + 1

    def speed(self) -> dict[str, float | None]:
        """While running: ``steps_per_s`` from the times the latest loss points were recorded,
        and ``eta_s`` (seconds left) from the progress made since the job started."""
        result: dict[str, float | None] = {"steps_per_s": None, "eta_s": None}
        if self.status != self.Status.RUNNING or not self.started_at:
            return result
        latest = (
            self.metrics.filter(series__endswith="train_loss", recorded_at__isnull=False)
            .order_by("-recorded_at", "-step")
            .values_list("series", "step", "recorded_at")[:400]
        )
        points = [p for p in latest if p[0] == latest[0][0]] if latest else []
        if len(points) > 1:
            seconds = (points[0][2] - points[-1][2]).total_seconds()
            steps = points[0][1] - points[-1][1]
            if seconds > 0 and steps > 0:
                result["steps_per_s"] = steps / seconds
        elapsed = (timezone.now() - self.started_at).total_seconds()
        if 0.01 <= self.progress < 1:
            result["eta_s"] = elapsed * (1 - self.progress) / self.progress
        return result

    def save_artifact(
        self, kind: str, name: str, content: IO[bytes] | bytes, content_type: str
    ) -> Artifact:
        """Store a file for this job; a second save under the same name replaces the first."""
        if isinstance(content, bytes):
            spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 << 20)
            spool.write(content)
            content = spool
        digest = hashlib.sha256()
        size = 0
        content.seek(0)
        for chunk in iter(lambda: content.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
        content.seek(0)
        old = Artifact.objects.filter(job=self, name=name).first()
        if old:
            old.file.delete(save=False)
            old.delete()
        artifact = Artifact(
            job=self, kind=kind, name=name, bytes=size, sha256=digest.hexdigest(),
            content_type=content_type,
        )  # fmt: skip
        artifact.file.save(f"{self.pk}/{name}", File(content), save=True)
        return artifact


def downsample(points: list[list[float]], max_points: int) -> list[list[float]]:
    """Keep at most ``max_points`` evenly spaced points, always including the last one."""
    if len(points) <= max_points or max_points < 2:
        return points
    stride = (len(points) - 1) / (max_points - 1)
    return [points[round(i * stride)] for i in range(max_points)]


class MetricPoint(models.Model):
    """One value of one named series of a job at one step (e.g. ``train_loss`` at 200)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metrics")
    series = models.CharField(max_length=64)
    step = models.BigIntegerField()
    value = models.FloatField()
    # When the point was recorded (charts by wall time); null for points stored before.
    recorded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "series", "step"], name="metric_unique_point")
        ]

    def __str__(self) -> str:
        return f"{self.series}[{self.step}] = {self.value}"


def artifact_path(instance: Artifact, filename: str) -> str:
    return f"artifacts/{filename}"


class Artifact(models.Model):
    """A file a job produced (graph JSON, tensor table, checkpoint), with size and sha256."""

    class Kind(models.TextChoices):
        GRAPH = "graph", "Graph"
        TENSORS = "tensors", "Tensor table"
        CHECKPOINT = "checkpoint", "Checkpoint"
        LOG = "log", "Log"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to=artifact_path, max_length=300)
    bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=100, default="application/octet-stream")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="artifact_unique_name")]

    def __str__(self) -> str:
        return self.name

    def read_json(self) -> Any:
        """Parse a JSON artifact (graph, tensor table) for a page or the API."""
        import json

        with self.file.open("rb") as handle:
            return json.load(handle)
