"""Model definitions people upload or pick from the zoo."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse

from webapp.core.labels import Labelled


class Architecture(Labelled, models.Model):
    """A network definition: a zoo entry with arguments, a ``torch.export`` archive or source.

    The web tier never builds the network; ``num_params``, ``input_shape`` and ``summary`` are
    filled in by the worker's inspect job through :meth:`record_inspection`.
    """

    labels_route, delete_route = "architecture-labels", "architecture-delete"
    labels_show_name = False  # the page's heading is the name

    class Source(models.TextChoices):
        ZOO = "zoo", "Built-in zoo"
        EXPORT = "export", "torch.export archive (.pt2)"
        PYTHON = "python", "Python source (.py)"
        HF_CONFIG = "hf_config", "Hugging Face causal-LM config (config.json)"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="architectures"
    )
    name = models.CharField(max_length=200)
    # Tags stored as ",a,b," (see Job.tags) and free notes.
    tags = models.CharField(max_length=500, blank=True, db_index=True)
    notes = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    zoo_name = models.CharField(max_length=100, blank=True)
    zoo_args = models.JSONField(default=dict, blank=True)
    file = models.FileField(upload_to="architectures/", blank=True, max_length=300)
    file_bytes = models.BigIntegerField(null=True, blank=True)
    # For files, the hash of the content; for zoo entries, of the name and arguments, so
    # duplicates of either kind are found the same way.
    sha256 = models.CharField(max_length=64, db_index=True)
    num_params = models.BigIntegerField(null=True, blank=True)
    input_shape = models.JSONField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    inspected_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "sha256"], name="architecture_unique_content")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("architecture-detail", args=[self.pk])

    @property
    def short_sha(self) -> str:
        """The first 8 hex digits of ``sha256``: enough to tell two alike-named models apart."""
        return self.sha256[:8]

    def delete_refusal(self) -> str:
        """Why this model cannot be deleted now, or ``""`` when it can."""
        if self.jobs.active().exists():
            return "This model has jobs still running; cancel them first."
        return ""

    def remove(self) -> None:
        """Delete the model with its jobs, their metrics and artifacts; the stored files go
        once the delete commits (``webapp.core.cleanup``). ``ValueError`` with the reason while
        one of its jobs is active."""
        refusal = self.delete_refusal()
        if refusal:
            raise ValueError(refusal)
        self.delete()

    @property
    def source_label(self) -> str:
        if self.source == self.Source.ZOO:
            args = ", ".join(f"{k}={v}" for k, v in sorted(self.zoo_args.items()))
            return f"zoo: {self.zoo_name}({args})"
        return self.get_source_display()

    def worker_spec(self) -> dict[str, Any]:
        """The JSON-able description a worker needs to build this network."""
        return {
            "source": self.source,
            "name": self.zoo_name,
            "args": self.zoo_args,
            "path": self.file.name if self.file else None,
        }

    def record_inspection(
        self,
        *,
        num_params: int,
        input_shape: list[int],
        layers: dict,
        output_shape: list[int] | None = None,
        input_dtype: str = "float32",
        nino: dict | None = None,
        ghn: dict | None = None,
    ) -> None:
        """Store what an inspect job found (called from the worker).

        Besides the layer counts, ``summary`` keeps what the checks before queueing read
        (``webapp.jobs.checks``): ``output_shape`` (one example's, no batch axis),
        ``input_dtype``, ``nino`` (``supported``, ``reason``, and ``nowcast``/``total``/``left``
        when the parameter graph counted its coverage) and ``ghn`` (``supported``, ``reason``).
        """
        from django.utils import timezone

        self.num_params = num_params
        self.input_shape = input_shape
        self.summary = {
            "layers": layers,
            "output_shape": output_shape,
            "input_dtype": input_dtype,
            "nino": nino or {},
            "ghn": ghn or {},
        }
        self.inspected_at = timezone.now()
        self.save(update_fields=["num_params", "input_shape", "summary", "inspected_at"])

    def weight_statistics(self) -> dict[str, Any] | None:
        """Per-tensor statistics (mean, std, min, max) of the newest checkpoint attached to
        this model whose scan read them (``.safetensors``), with where they came from; None
        when no attached checkpoint has any."""
        for checkpoint in self.checkpoints.order_by("-created_at", "-id").only(
            "id", "name", "tensors"
        ):
            stats = {t["name"]: t["stats"] for t in checkpoint.tensors or [] if t.get("stats")}
            if stats:
                return {"checkpoint": {"id": checkpoint.pk, "name": checkpoint.name},
                        "tensors": stats}  # fmt: skip
        return None

    def latest_inspection(self):  # -> Job | None
        """The newest succeeded inspect job, whose artifacts hold the graph and tensor table."""
        return self.jobs.filter(kind="inspect", status="succeeded").order_by("-finished_at").first()

    @property
    def latest_inspection_id(self) -> int | None:
        """Its primary key; read from ``with_latest_inspection`` lists without a query."""
        if "_latest_inspection_id" in self.__dict__:
            return self.__dict__["_latest_inspection_id"]
        job = self.latest_inspection()
        return job.pk if job else None


def with_latest_inspection(queryset: models.QuerySet) -> models.QuerySet:
    """``queryset`` of architectures annotated with their newest succeeded inspection's id, so
    that a list costs one query however long it is."""
    from webapp.jobs.models import Job

    newest = Job.objects.filter(
        architecture=models.OuterRef("pk"), kind="inspect", status="succeeded"
    ).order_by("-finished_at")
    return queryset.annotate(_latest_inspection_id=models.Subquery(newest.values("pk")[:1]))


def _zoo_digest(zoo_name: str, args: dict) -> str:
    import hashlib
    import json

    payload = json.dumps({"zoo": zoo_name, "args": args}, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()


def _refuse_duplicate(owner: Any, sha256: str) -> None:
    from webapp.core.files import refuse_duplicate

    refuse_duplicate(
        owner.architectures, sha256, "You already have this model as '{name}' (architecture {pk})."
    )


def create_from_zoo(owner: Any, name: str, zoo_name: str, args: dict | None) -> Architecture:
    """Add a zoo entry with arguments; ``UploadError`` on a bad name/arguments, a model above
    ``MAX_MODEL_PARAMS`` (counted from the arguments, nothing is built) or a duplicate."""
    from django.conf import settings

    from webapp.core.files import UploadError, fit_name
    from workers.catalog.models import validate_args

    try:
        clean = validate_args(zoo_name, args or {}, max_params=settings.MAX_MODEL_PARAMS)
    except ValueError as error:
        raise UploadError(str(error)) from None
    digest = _zoo_digest(zoo_name, clean)
    _refuse_duplicate(owner, digest)
    return Architecture.objects.create(
        owner=owner,
        name=fit_name(name or zoo_name),
        source=Architecture.Source.ZOO,
        zoo_name=zoo_name,
        zoo_args=clean,
        sha256=digest,
    )


def create_from_upload(
    owner: Any, name: str, source: str, upload: Any, *, weights: Any = None
) -> Architecture:
    """Store an uploaded ``.pt2`` archive, ``.py`` source or Hugging Face ``config.json`` after
    checking it.

    Nothing in the file is executed here: ``.pt2`` archives are checked as zips whose pickles
    hold only tensors; Python is only syntax-checked, and only accepted when the operator
    allowed Python models; a config is checked as JSON against the causal-LM families and
    ``MAX_MODEL_PARAMS`` (``workers.safety.hf_config``). ``weights`` (configs only), a
    ``.safetensors`` file, becomes a checkpoint attached to the new architecture. Raises
    ``UploadError``; on any error nothing is stored.
    """
    from django.conf import settings

    from webapp.core.files import UploadError, check_upload, fit_name, save_with_upload
    from workers.errors import ModelError
    from workers.safety.checkpoints import scan_export_archive

    if source == Architecture.Source.EXPORT:
        facts = check_upload(upload, (".pt2",))
        # A known archive is answered before the (costly) scan.
        _refuse_duplicate(owner, facts.sha256)
        try:
            scan_export_archive(upload, max_inflated=settings.UPLOAD_MAX_INFLATED)
        except ModelError as error:
            raise UploadError(str(error)) from None
    elif source == Architecture.Source.PYTHON:
        if not settings.ALLOW_PYTHON_MODELS:
            raise UploadError(
                "Python model sources are turned off on this server (ALLOW_PYTHON_MODELS); "
                "upload a torch.export archive (.pt2) or pick a zoo model.",
                status=403,
            )
        facts = check_upload(upload, (".py",))
        _refuse_duplicate(owner, facts.sha256)
        if facts.size > 1_000_000:
            raise UploadError("Python model sources are limited to 1 MB.")
        upload.seek(0)
        try:
            compile(upload.read().decode("utf-8"), upload.name, "exec")
        except (UnicodeDecodeError, SyntaxError, ValueError) as error:
            raise UploadError(f"The Python source does not compile: {error}") from None
        upload.seek(0)
    elif source == Architecture.Source.HF_CONFIG:
        facts = check_upload(upload, (".json",))
        _refuse_duplicate(owner, facts.sha256)
        config = _checked_hf_config(upload, facts.size)
    else:
        raise UploadError(
            f"Unknown model source {source!r}; use 'zoo', 'export', 'python' or 'hf_config'."
        )
    if weights is not None:
        if source != Architecture.Source.HF_CONFIG:
            raise UploadError("Weights can be attached to a Hugging Face config only.")
        _check_hf_weights(owner, weights, config)
    architecture = Architecture(
        owner=owner,
        # Left blank, the name is the file name and the start of its hash, so that two
        # uploads both called model.pt2 can be told apart in every list.
        name=fit_name(name.strip() or f"{upload.name} · {facts.sha256[:8]}"),
        source=source,
        sha256=facts.sha256,
        file_bytes=facts.size,
    )
    if source == Architecture.Source.HF_CONFIG:
        # The count is exact without building (the worker's memory check reads it).
        architecture.num_params = config.num_params
        # The training window: what the train task reads for character-level data.
        architecture.zoo_args = {
            "model_type": config.model_type, "context": min(128, config.max_positions)
        }
    save_with_upload(architecture, upload, f"architectures/{owner.pk}")
    if weights is not None:
        _attach_hf_weights(architecture, weights)
    return architecture


def _checked_hf_config(upload: Any, size: int) -> Any:
    """The facts of an uploaded ``config.json`` (``HFConfigFacts``), or ``UploadError``."""
    from django.conf import settings

    from webapp.core.files import UploadError
    from workers.errors import ModelError
    from workers.safety.hf_config import MAX_CONFIG_BYTES, check_hf_config

    if size > MAX_CONFIG_BYTES:
        raise UploadError(
            f"'{upload.name}' is {size:,} bytes; a Hugging Face config.json is a few kB "
            f"(limit {MAX_CONFIG_BYTES:,})."
        )
    upload.seek(0)
    try:
        facts = check_hf_config(upload.read(), max_params=settings.MAX_MODEL_PARAMS)
    except ModelError as error:
        raise UploadError(str(error)) from None
    upload.seek(0)
    return facts


def _check_hf_weights(owner: Any, weights: Any, config: Any) -> None:
    """Refuse weights for a config before anything of the upload is stored: a ``.safetensors``
    file, not a duplicate, a sound header, and at least as many values as the model has
    parameters (a tied head may be absent, extra buffers present; names and shapes are checked
    against the built model on the worker)."""
    from django.conf import settings

    from webapp.core.files import UploadError, check_upload, refuse_duplicate
    from workers.errors import ModelError
    from workers.safety.checkpoints import scan_checkpoint

    facts = check_upload(weights, (".safetensors",))
    refuse_duplicate(
        owner.checkpoints, facts.sha256,
        "You already uploaded these weights as '{name}' (checkpoint {pk}).",
    )  # fmt: skip
    try:
        scanned = scan_checkpoint(
            weights, weights.name, facts.size, max_inflated=settings.UPLOAD_MAX_INFLATED
        )
    except ModelError as error:
        raise UploadError(str(error)) from None
    weights.seek(0)
    if (scanned.num_elements or 0) < config.num_params:
        raise UploadError(
            f"The weights hold {scanned.num_elements or 0:,} values but this config has "
            f"{config.num_params:,} parameters: they are not this model's weights."
        )


def _attach_hf_weights(architecture: Architecture, weights: Any) -> None:
    """Store checked ``weights`` as a checkpoint of the new ``architecture``; should that still
    fail, the architecture goes too (its file follows on commit)."""
    from webapp.checkpoints.models import create_checkpoint
    from webapp.core.files import UploadError

    try:
        create_checkpoint(
            architecture.owner, f"{architecture.name} weights", weights, architecture=architecture
        )
    except UploadError:
        architecture.delete()
        raise
