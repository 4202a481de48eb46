"""The train form on the architecture page; it feeds the same validation as the API."""

from __future__ import annotations

from typing import Any

from django import forms

from webapp.datasets.models import Dataset
from webapp.jobs.parameters import ACCELERATORS, BUILTIN_DATASETS


class TrainForm(forms.Form):
    dataset = forms.ChoiceField(label="Data set")
    accelerator = forms.ChoiceField(choices=list(ACCELERATORS.items()), initial="nino")
    compare = forms.BooleanField(
        required=False, initial=True, label="Also train with the plain optimizer (same batches)"
    )
    optimizer = forms.ChoiceField(
        choices=[("adamw", "AdamW"), ("adam", "Adam"), ("sgd", "SGD")], initial="adamw"
    )
    lr = forms.FloatField(initial=0.006, label="Learning rate")
    batch_size = forms.IntegerField(initial=128)
    steps = forms.IntegerField(initial=10_000)
    eval_every = forms.IntegerField(initial=100, label="Evaluate every")
    period = forms.IntegerField(
        initial=1000, label="Nowcast every", help_text="steps (a multiple of 5; published: 1000)"
    )
    targets = forms.CharField(
        required=False, initial="0.88, 0.885, 0.895",
        help_text="Comma-separated accuracies (or perplexities) to report steps-to-target for",
    )  # fmt: skip

    def __init__(self, *args: Any, owner: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        builtin = [(f"builtin:{k}", v) for k, v in BUILTIN_DATASETS.items()]
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


class PredictForm(forms.Form):
    """The predict form on the architecture page."""

    ghn = forms.ChoiceField(label="Hypernetwork")
    evaluate_on = forms.ChoiceField(
        required=False,
        label="Measure accuracy on",
        choices=[("", "— no evaluation —"), *BUILTIN_DATASETS.items()],
    )
    then_train = forms.BooleanField(
        required=False, label="Then train from the prediction with NiNo (on that data set)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from webapp.jobs.parameters import available_ghns

        super().__init__(*args, **kwargs)
        self.fields["ghn"].choices = [(name, name) for name in available_ghns()]

    def parameters(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        then_train = data.pop("then_train")
        if then_train:
            data["then_train"] = {"dataset": data.get("evaluate_on") or "fashion_mnist"}
        return data
