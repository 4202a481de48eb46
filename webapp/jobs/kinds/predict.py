"""The ``predict`` job: a Graph HyperNetwork predicts all of an architecture's parameters.

Optionally the prediction is evaluated against random initialisation, and a train job is
queued from it once the prediction has succeeded (:func:`train_from_prediction`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from rest_framework import serializers

from webapp.jobs.kinds import JobKind
from webapp.jobs.kinds.train import TrainParameters
from workers.catalog import DATASETS
from workers.catalog.hypernetworks import describe, hypernetwork_files


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


class PredictForm(forms.Form):
    """The predict form on the architecture page."""

    ghn = forms.ChoiceField(label="Hypernetwork")
    evaluate_on = forms.ChoiceField(
        required=False,
        label="Measure accuracy on",
        choices=[("", "— no evaluation —"), *((d.name, d.description) for d in DATASETS.values())],
    )
    then_train = forms.BooleanField(
        required=False, label="Then train from the prediction with NiNo (on that data set)"
    )

    def __init__(self, *args: Any, owner: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["ghn"].choices = [(name, name) for name in ghn_files()]

    def parameters(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        then_train = data.pop("then_train")
        if then_train:
            data["then_train"] = {"dataset": data.get("evaluate_on") or "fashion_mnist"}
        return data


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
)
