"""The ``predict`` job: a Graph HyperNetwork predicts all of an architecture's parameters.

Optionally the prediction is evaluated against random initialisation, and a train job is
queued from it once the prediction has succeeded (:func:`train_from_prediction`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from rest_framework import serializers

from webapp.jobs.checks import check_predict, fitting_builtin, model_facts, short_label
from webapp.jobs.kinds import JobKind
from webapp.jobs.kinds.train import CheckedForm, DescribedSelect, TrainParameters
from workers.catalog import DATASETS
from workers.catalog.hypernetworks import describe, get_domain, hypernetwork_files


def ghn_files() -> dict[str, Path]:
    """The GHNs this server offers, by name ("ours" first), from the settings."""
    from django.conf import settings

    return hypernetwork_files(settings.GHN_OURS_PATH, settings.GHN_CHECKPOINT_DIR)


def ghn_descriptions() -> dict[str, str]:
    """One line per available GHN, for the API and the predict form."""
    return {name: describe(name, path) for name, path in ghn_files().items()}


class PredictParameters(serializers.Serializer):
    """Which GHN predicts, and what to do with the prediction."""

    ghn = serializers.CharField(max_length=100)
    evaluate_on = serializers.ChoiceField(
        choices=["", *DATASETS], default="", required=False,
        help_text="A built-in data set to measure accuracy with predicted vs random parameters.",
    )  # fmt: skip
    then_train = serializers.DictField(
        required=False, allow_null=True, default=None,
        help_text="Train parameters: start a train job from the predicted checkpoint.",
    )  # fmt: skip

    def __init__(self, *args: Any, owner: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    def validate_ghn(self, value: str) -> str:
        installed = list(ghn_files())
        if value not in installed:
            listing = ", ".join(installed) or "none are installed (see GHN_CHECKPOINT_DIR)"
            raise serializers.ValidationError(f"Unknown GHN {value!r}; available: {listing}.")
        return value

    def validate_then_train(self, value: Any) -> Any:
        if value is None:
            return None
        train = TrainParameters(data=value, owner=self.owner)
        train.is_valid(raise_exception=True)
        return dict(train.validated_data)


class PredictForm(CheckedForm):
    """The predict form on the architecture page. With the ``architecture`` it measures
    accuracy by default on a built-in data set the model reads (none when none fits)."""

    kind_name = "predict"

    ghn = forms.ChoiceField(
        label="Hypernetwork",
        widget=DescribedSelect(),
        help_text="Which meta-trained GHN predicts; its domain and measured accuracy are below.",
    )
    evaluate_on = forms.ChoiceField(
        required=False,
        label="Measure accuracy on",
        choices=[("", "— no evaluation —"),
                 *((d.name, short_label(d.description)) for d in DATASETS.values() if not d.text)],
        widget=DescribedSelect(
            descriptions={d.name: d.description for d in DATASETS.values() if not d.text}
        ),
        help_text="Test accuracy with the predicted parameters and with random init, side by "
        "side (BatchNorm statistics measured on 512 training images for both).",
    )  # fmt: skip
    then_train = forms.BooleanField(
        required=False, label="Then train from the prediction with NiNo (on that data set)",
        help_text="Queues a train job from the predicted checkpoint once the prediction is done.",
    )  # fmt: skip

    def __init__(
        self, *args: Any, owner: Any = None, architecture: Any = None, like: Any = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        files = ghn_files()
        self.fields["ghn"].choices = [(name, name) for name in files]
        self.fields["ghn"].initial = next(iter(files), None)  # "ours" first
        self.fields["ghn"].widget.descriptions = ghn_descriptions()
        self.architecture, self.owner = architecture, owner
        if architecture is not None and like is None:
            fitting = fitting_builtin(model_facts(architecture), images_only=True)
            self.fields["evaluate_on"].initial = fitting or ""

    def parameters(self) -> dict[str, Any]:
        data = self.job_data()
        then_train = data.pop("then_train")
        if then_train:
            data["then_train"] = {"dataset": data.get("evaluate_on") or "fashion_mnist"}
        return data

    def domains(self) -> list[tuple[str, Any]]:
        """``(name, Domain or None)`` of each GHN offered, for the claims next to the button."""
        return [(name, get_domain(name)) for name, _ in self.fields["ghn"].choices]


def train_from_prediction(job: Any) -> None:
    """When the person asked for it, store the prediction as a checkpoint of theirs and queue
    a train job from it; the predict job's result links to it (``train_job``)."""
    from webapp.checkpoints.models import checkpoint_from_artifact
    from webapp.jobs.models import Job

    parameters = job.parameters.get("then_train")
    if not parameters:
        return
    artifact = job.artifacts.get(name="predicted.safetensors")
    checkpoint = checkpoint_from_artifact(
        job.owner,
        artifact,
        name=f"{job.architecture.name} · predicted by {job.parameters['ghn']}",
        architecture=job.architecture,
    )
    train = Job.submit(
        owner=job.owner,
        kind="train",
        architecture=job.architecture,
        checkpoint=checkpoint,
        parameters=parameters,
    )
    job.add_result(train_job=train.pk)


KIND = JobKind(
    name="predict",
    label="Predict",
    task="weightspace.predict",
    queue="gpu",
    needs_architecture=True,
    description="Predict all parameters with a Graph HyperNetwork, in one pass.",
    parameters=PredictParameters,
    form=PredictForm,
    on_succeeded=train_from_prediction,
    checks=check_predict,
)
