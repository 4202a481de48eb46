from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings

from webapp.architectures.models import Architecture
from workers.catalog.models import load_catalog


def zoo_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for entry in load_catalog():
        label = f"{entry['name']} — {entry['num_params']:,} params"
        groups.setdefault(entry["family"], []).append((entry["name"], label))
    return [("", [("", "— choose a model —")])] + sorted(groups.items())


class ArchitectureForm(forms.Form):
    """The upload page: pick a zoo model, or upload a .pt2 archive (or .py, where allowed)."""

    source = forms.ChoiceField(widget=forms.RadioSelect, initial=Architecture.Source.ZOO)
    name = forms.CharField(
        max_length=200,
        required=False,
        help_text="Defaults to the zoo model's name, or the file name and the start of its "
        "sha256 (model.pt2 · 3fa9c2d1), so two uploads are never called alike.",
    )
    zoo_name = forms.ChoiceField(required=False, label="Zoo model")
    zoo_args = forms.CharField(
        required=False,
        label="Arguments (JSON)",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"num_classes": 10}'}),
    )
    file = forms.FileField(required=False, help_text=".pt2 from torch.export.save")
    weights = forms.FileField(
        required=False, label="Weights (optional)",
        help_text="model.safetensors saved by transformers for this config",
    )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sources = [
            (Architecture.Source.ZOO, "Built-in zoo"),
            (Architecture.Source.EXPORT, "torch.export archive (.pt2)"),
            (Architecture.Source.HF_CONFIG, "Hugging Face config (config.json)"),
        ]
        self.allows_python = settings.ALLOW_PYTHON_MODELS
        if self.allows_python:
            sources.append((Architecture.Source.PYTHON, "Python source (.py)"))
        self.fields["source"].choices = sources
        self.fields["zoo_name"].choices = zoo_choices()

    def clean_zoo_args(self) -> dict:
        raw = self.cleaned_data.get("zoo_args", "").strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(f"Not valid JSON: {error}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Write a JSON object, e.g. {"num_classes": 10}.')
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("source") == Architecture.Source.ZOO:
            if not data.get("zoo_name"):
                self.add_error("zoo_name", "Choose a zoo model.")
        elif data.get("source") and not data.get("file"):
            self.add_error("file", "Attach the model file.")
        return data
