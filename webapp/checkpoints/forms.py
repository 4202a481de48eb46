from __future__ import annotations

from typing import Any

from django import forms

from webapp.architectures.models import Architecture


class CheckpointForm(forms.Form):
    """Upload a checkpoint, optionally linked to one of your architectures."""

    file = forms.FileField(
        help_text=".safetensors, or .pt/.pth saved with torch.save (tensors only)"
    )
    name = forms.CharField(max_length=200, required=False)
    architecture = forms.ModelChoiceField(queryset=Architecture.objects.none(), required=False)

    def __init__(self, *args: Any, owner: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["architecture"].queryset = Architecture.objects.filter(owner=owner)
