"""The ``train`` job: train an architecture on a data set, optionally accelerated by NiNo.

Its parameters are validated here (API and form alike) before anything is queued; the names,
choices and defaults come from ``workers.catalog``, which the worker reads too.
"""

from __future__ import annotations

from typing import Any

from django import forms
from rest_framework import serializers

from webapp.jobs.kinds import JobKind
from workers.catalog import ACCELERATORS, DATASETS, DEVICES, OPTIMIZERS
from workers.catalog.training import DEFAULTS


class TrainParameters(serializers.Serializer):
    """What to train on and how; the defaults are the published FM/16 protocol's."""

    dataset = serializers.ChoiceField(choices=list(DATASETS), required=False)
    dataset_id = serializers.IntegerField(required=False, min_value=1)
    optimizer = serializers.ChoiceField(choices=list(OPTIMIZERS), default=DEFAULTS.optimizer)
    lr = serializers.FloatField(min_value=1e-8, max_value=10.0, default=DEFAULTS.lr)
    weight_decay = serializers.FloatField(
        min_value=0.0, max_value=1.0, default=DEFAULTS.weight_decay
    )
    batch_size = serializers.IntegerField(min_value=1, max_value=8192, default=DEFAULTS.batch_size)
    steps = serializers.IntegerField(min_value=1, max_value=1_000_000, default=DEFAULTS.steps)
    eval_every = serializers.IntegerField(
        min_value=1, max_value=100_000, default=DEFAULTS.eval_every
    )
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=DEFAULTS.seed)
    accelerator = serializers.ChoiceField(choices=list(ACCELERATORS), default=DEFAULTS.accelerator)
    period = serializers.IntegerField(min_value=5, max_value=100_000, default=DEFAULTS.period)
    compare = serializers.BooleanField(
        default=DEFAULTS.compare,
        help_text="Also train with the plain optimizer, on the same batches.",
    )
    targets = serializers.ListField(
        child=serializers.FloatField(min_value=0.0), max_length=10, default=list,
        help_text="Accuracies (or perplexities for text) whose first crossing is reported.",
    )  # fmt: skip
    device = serializers.ChoiceField(choices=list(DEVICES), default=DEFAULTS.device)

    def __init__(self, *args: Any, owner: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        from webapp.datasets.models import Dataset

        if bool(attrs.get("dataset")) == bool(attrs.get("dataset_id")):
            raise serializers.ValidationError(
                "Give either a built-in 'dataset' "
                f"({', '.join(DATASETS)}) or the 'dataset_id' of one you uploaded."
            )
        if (
            attrs.get("dataset_id")
            and not Dataset.objects.filter(pk=attrs["dataset_id"], owner=self.owner).exists()
        ):
            raise serializers.ValidationError({"dataset_id": "No such data set of yours."})
        if attrs["period"] % 5:
            raise serializers.ValidationError(
                {"period": "The nowcast period must be a multiple of 5 (the context length)."}
            )
        if attrs["accelerator"] == "none" and attrs["compare"]:
            raise serializers.ValidationError(
                {"compare": "Comparing needs an accelerator to compare with."}
            )
        return attrs


class TrainForm(forms.Form):
    """The train form on the architecture page; it feeds the same validation as the API."""

    dataset = forms.ChoiceField(label="Data set")
    accelerator = forms.ChoiceField(
        choices=[(a.name, a.label) for a in ACCELERATORS.values()], initial=DEFAULTS.accelerator
    )
    # On the page the comparison is on by default: a person wants to see both curves.
    compare = forms.BooleanField(
        required=False, initial=True, label="Also train with the plain optimizer (same batches)"
    )
    optimizer = forms.ChoiceField(choices=list(OPTIMIZERS.items()), initial=DEFAULTS.optimizer)
    lr = forms.FloatField(initial=DEFAULTS.lr, label="Learning rate")
    batch_size = forms.IntegerField(initial=DEFAULTS.batch_size)
    steps = forms.IntegerField(initial=DEFAULTS.steps)
    eval_every = forms.IntegerField(initial=DEFAULTS.eval_every, label="Evaluate every")
    period = forms.IntegerField(
        initial=DEFAULTS.period, label="Nowcast every",
        help_text="steps (a multiple of 5; published: 1000)",
    )  # fmt: skip
    targets = forms.CharField(
        required=False, initial="0.88, 0.885, 0.895",
        help_text="Comma-separated accuracies (or perplexities) to report steps-to-target for",
    )  # fmt: skip

    def __init__(self, *args: Any, owner: Any, **kwargs: Any) -> None:
        from webapp.datasets.models import Dataset

        super().__init__(*args, **kwargs)
        builtin = [(f"builtin:{d.name}", d.description) for d in DATASETS.values()]
        uploaded = [(f"upload:{d.pk}", d.name) for d in Dataset.objects.filter(owner=owner)]
        self.fields["dataset"].choices = [("Built-in", builtin)] + (
            [("Your uploads", uploaded)] if uploaded else []
        )

    def parameters(self) -> dict[str, Any]:
        """The form as the ``parameters`` JSON the API takes."""
        data = dict(self.cleaned_data)
        source, _, value = data.pop("dataset").partition(":")
        if source == "upload":
            data["dataset_id"] = int(value)
        else:
            data["dataset"] = value
        raw = data.pop("targets") or ""
        try:
            data["targets"] = [float(t) for t in raw.replace(";", ",").split(",") if t.strip()]
        except ValueError:
            data["targets"] = raw  # the parameter validation reports it
        if data["accelerator"] == "none":
            data["compare"] = False
        return data


KIND = JobKind(
    name="train",
    label="Train",
    task="weightspace.train",
    queue="gpu",
    needs_architecture=True,
    description="Train on a data set, optionally accelerated by NiNo nowcasting.",
    parameters=TrainParameters,
    form=TrainForm,
)
