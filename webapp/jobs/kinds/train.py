"""The ``train`` job: train an architecture on a data set, optionally accelerated by NiNo.

Its parameters are validated here (API and form alike) before anything is queued; the names,
choices and defaults come from ``workers.catalog``, which the worker reads too.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django import forms
from django.utils.html import format_html
from rest_framework import serializers

from webapp.core.labels import NAME_LENGTH, TagError, normalise_tags
from webapp.jobs.checks import (
    Verdict,
    builtin_facts,
    check_accelerator,
    check_data,
    check_train,
    fitting_builtin,
    model_facts,
    shape_label,
    supports,
    uploaded_facts,
)
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
        from webapp.datasets.models import Dataset, refuse_unavailable_builtin

        refuse_unavailable_builtin(attrs.get("dataset"))  # downloads off: refused before queueing
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


class DescribedSelect(forms.Select):
    """A select whose options carry their long description as ``title``: the option text
    stays short (never cut), the page shows the chosen one's description under the field."""

    def __init__(self, *args: Any, descriptions: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.descriptions = descriptions or {}
        self.attrs.setdefault("data-describe", "")

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        description = self.descriptions.get(str(value))
        if description:
            option["attrs"]["title"] = description
        return option

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> str:
        # The chosen option's description under the select (static/js/checks/form.js keeps
        # it current as the choice changes).
        html = super().render(name, value, attrs, renderer)
        chosen = value[0] if isinstance(value, list | tuple) and value else value
        return format_html(
            '{}<small class="describe" data-describes="{}">{}</small>',
            html, (attrs or {}).get("id", ""), self.descriptions.get(str(chosen), ""),
        )  # fmt: skip


class CheckedForm(forms.Form):
    """A job form that knows its architecture, so the page can show the checks' verdict on
    what it holds (``verdict``) and what the model supports (``supports``)."""

    kind_name = ""
    architecture: Any = None
    owner: Any = None

    # What the run is called and tagged as (the job's labels, not its parameters).
    run_name = forms.CharField(
        label="Run name", required=False, max_length=NAME_LENGTH,
        help_text="Optional: how this run is listed on the dashboard and in comparisons.",
    )  # fmt: skip
    run_tags = forms.CharField(
        label="Tags", required=False,
        help_text="Optional, separated by commas: e.g. baseline, lr-sweep.",
    )  # fmt: skip
    LABEL_FIELDS = ("run_name", "run_tags")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.LABEL_FIELDS:  # shown after the kind's own fields
            self.fields[name] = self.fields.pop(name)

    def clean_run_tags(self) -> str:
        try:
            return normalise_tags(self.cleaned_data.get("run_tags", ""))
        except TagError as error:
            raise forms.ValidationError(str(error)) from error

    def labels(self) -> dict[str, str]:
        """``name`` and stored ``tags`` for ``Job.submit``."""
        return {
            "name": self.cleaned_data.get("run_name", "").strip(),
            "tags": self.cleaned_data.get("run_tags", ""),
        }

    def job_data(self) -> dict[str, Any]:
        """The cleaned data without the labels: what ``parameters()`` builds on."""
        return {k: v for k, v in self.cleaned_data.items() if k not in self.LABEL_FIELDS}

    @cached_property
    def verdict(self) -> Verdict:
        from webapp.jobs.kinds import get_kind

        if self.architecture is None:
            return Verdict()
        data = self.data if self.is_bound else None
        return get_kind(self.kind_name).preview(self.architecture, self.owner, data, like=self)

    @cached_property
    def supports(self) -> list[tuple[str, str, str]]:
        return supports(model_facts(self.architecture)) if self.architecture is not None else []


# Option texts that fit the select; the catalog's full label is shown under it.
SHORT_ACCELERATOR_LABELS = {
    "none": "None (plain optimizer)",
    "nino": "NiNo, published",
    "ours": "NiNo, our weights",
    "wnn": "WNN+ baseline",
}


def accelerator_label(name: str, label: str) -> str:
    """A short option text for the accelerator ``name``: the one above, else the catalog
    label without its parenthesis ("NiNo, published checkpoint (…)" → "NiNo, published
    checkpoint")."""
    return SHORT_ACCELERATOR_LABELS.get(name) or label.split(" (", 1)[0].strip()


def dataset_choices(owner: Any) -> tuple[list, dict[str, str]]:
    """The data set select's grouped choices (short names) and their descriptions."""
    from webapp.datasets.models import Dataset

    descriptions: dict[str, str] = {}
    builtin = []
    for entry in DATASETS.values():
        key = f"builtin:{entry.name}"
        descriptions[key] = entry.description
        facts = builtin_facts(entry.name)
        suffix = " (download)" if facts.download else " (text)" if facts.text else ""
        builtin.append((key, facts.label + suffix))
    uploaded = []
    for row in Dataset.objects.filter(owner=owner):
        key = f"upload:{row.pk}"
        summary = row.summary or {}
        if row.format == "text":
            detail = f"{summary.get('characters', '?')} characters of text"
        else:
            detail = (
                f"{summary.get('samples', '?')} samples, "
                f"{shape_label(summary.get('input_shape'))} inputs, "
                f"{summary.get('classes', '?')} classes"
            )
        descriptions[key] = f"Your upload '{row.name}': {detail}"
        uploaded.append((key, row.name))
    choices: list = [("Built-in", builtin)]
    if uploaded:
        choices.append(("Your uploads", uploaded))
    return choices, descriptions


def fitting_dataset(architecture: Any, owner: Any) -> str | None:
    """The data set choice a train form starts on: the first built-in one the model can
    read (on disk before downloaded), else the first upload that fits; None: nothing fits."""
    from webapp.datasets.models import Dataset

    model = model_facts(architecture)
    name = fitting_builtin(model)
    if name:
        return f"builtin:{name}"
    for row in Dataset.objects.filter(owner=owner):
        verdict = check_data(model, uploaded_facts(row))
        if verdict.ok and not verdict.warnings:
            return f"upload:{row.pk}"
    return None


class TrainForm(CheckedForm):
    """The train form on the architecture page; it feeds the same validation (and the same
    checks before queueing) as the API. With the ``architecture`` it starts on choices that
    can run: a data set the model reads, the plain optimizer where NiNo cannot read it."""

    kind_name = "train"

    dataset = forms.ChoiceField(
        label="Data set", help_text="What to train and evaluate on; its shape must fit the model."
    )
    accelerator = forms.ChoiceField(
        choices=[(a.name, accelerator_label(a.name, a.label)) for a in ACCELERATORS.values()],
        initial=DEFAULTS.accelerator,
        widget=DescribedSelect(descriptions={a.name: a.label for a in ACCELERATORS.values()}),
        help_text="NiNo replaces every Nth step with a nowcast jump; None trains plainly.",
    )
    # On the page the comparison is on by default: a person wants to see both curves.
    compare = forms.BooleanField(
        required=False, initial=True, label="Also train with the plain optimizer (same batches)",
        help_text="A second run on the same batches, for the speed-up in steps.",
    )  # fmt: skip
    optimizer = forms.ChoiceField(
        choices=list(OPTIMIZERS.items()), initial=DEFAULTS.optimizer,
        help_text="The base optimizer NiNo accelerates.",
    )  # fmt: skip
    lr = forms.FloatField(
        initial=DEFAULTS.lr, label="Learning rate", help_text="Of the base optimizer."
    )
    batch_size = forms.IntegerField(initial=DEFAULTS.batch_size, help_text="Examples per step.")
    steps = forms.IntegerField(initial=DEFAULTS.steps, help_text="Optimizer steps per run.")
    eval_every = forms.IntegerField(
        initial=DEFAULTS.eval_every, label="Evaluate every",
        help_text="Steps between test-set evaluations (points on the accuracy chart).",
    )  # fmt: skip
    period = forms.IntegerField(
        initial=DEFAULTS.period, label="Nowcast every",
        help_text="Steps between NiNo jumps: a multiple of 5; published: 1000.",
    )  # fmt: skip
    targets = forms.CharField(
        required=False, initial="0.88, 0.885, 0.895",
        help_text="Comma-separated accuracies (perplexities for text) to count steps to.",
    )  # fmt: skip

    def __init__(
        self, *args: Any, owner: Any, architecture: Any = None, like: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # ``like``: a form of the same person whose choices to reuse (no second query).
        if isinstance(like, TrainForm):
            choices, descriptions = like.fields["dataset"].choices, like.dataset_descriptions
        else:
            choices, descriptions = dataset_choices(owner)
        self.dataset_descriptions = descriptions
        self.fields["dataset"].widget = DescribedSelect(descriptions=descriptions)
        self.fields["dataset"].choices = choices  # sets the widget's too
        self.architecture, self.owner = architecture, owner
        # What a browser submits untouched: the first choice, unless one fits the model.
        self.fields["dataset"].initial = choices[0][1][0][0]
        if architecture is not None and like is None:
            fitting = fitting_dataset(architecture, owner)
            if fitting:
                self.fields["dataset"].initial = fitting
            if not check_accelerator(model_facts(architecture), DEFAULTS.accelerator).ok:
                self.fields["accelerator"].initial = "none"
                self.fields["compare"].initial = False

    def parameters(self) -> dict[str, Any]:
        """The form as the ``parameters`` JSON the API takes."""
        data = self.job_data()
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
    checks=check_train,
)
