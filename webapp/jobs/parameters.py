"""Validation of each job kind's ``parameters`` JSON, in the web tier, before anything is queued.

Each kind may register a serializer; its cleaned data is what the worker receives. Kinds without
one take no parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rest_framework import serializers

BUILTIN_DATASETS: dict[str, str] = {
    "fashion_mnist": "Fashion-MNIST: 55k/10k 28×28 grey images, 10 classes",
    "mnist1d": "MNIST-1D: procedurally generated 40-step sequences, 10 classes",
    "shakespeare": "Shakespeare's plays, character-level (needs a transformer model)",
    "pydoc": "Python's documentation topics, character-level (small; for smoke tests)",
}
ACCELERATORS: dict[str, str] = {
    "none": "None: the plain optimizer",
    "nino": "NiNo, published checkpoint (nino_no_posw)",
    "ours": "NiNo, our own meta-trained weights (small; see workers/nino/weights/manifest.json)",
    "wnn": "WNN+, published per-parameter baseline (nino_mlp)",
}


class TrainParameters(serializers.Serializer):
    """What to train on and how; the defaults are the published FM/16 protocol's."""

    dataset = serializers.ChoiceField(choices=list(BUILTIN_DATASETS), required=False)
    dataset_id = serializers.IntegerField(required=False, min_value=1)
    optimizer = serializers.ChoiceField(choices=["adamw", "adam", "sgd"], default="adamw")
    lr = serializers.FloatField(min_value=1e-8, max_value=10.0, default=0.006)
    weight_decay = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    batch_size = serializers.IntegerField(min_value=1, max_value=8192, default=128)
    steps = serializers.IntegerField(min_value=1, max_value=1_000_000, default=10_000)
    eval_every = serializers.IntegerField(min_value=1, max_value=100_000, default=100)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    accelerator = serializers.ChoiceField(choices=list(ACCELERATORS), default="nino")
    period = serializers.IntegerField(min_value=5, max_value=100_000, default=1000)
    compare = serializers.BooleanField(
        default=False, help_text="Also train with the plain optimizer, on the same batches."
    )
    targets = serializers.ListField(
        child=serializers.FloatField(min_value=0.0), max_length=10, default=list,
        help_text="Accuracies (or perplexities for text) whose first crossing is reported.",
    )  # fmt: skip
    device = serializers.ChoiceField(choices=["auto", "cpu", "cuda"], default="auto")

    def __init__(self, *args: Any, owner: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        from webapp.datasets.models import Dataset

        if bool(attrs.get("dataset")) == bool(attrs.get("dataset_id")):
            raise serializers.ValidationError(
                "Give either a built-in 'dataset' "
                f"({', '.join(BUILTIN_DATASETS)}) or the 'dataset_id' of one you uploaded."
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


def ghn_files() -> dict[str, Path]:
    """The GHNs a predict job can use, by name: "ours" (the project's own, when its file is
    there) first, then the converted files installed in ``GHN_CHECKPOINT_DIR`` by file name
    (an installed ``ours.pt`` takes the name's place)."""
    from django.conf import settings

    files: dict[str, Path] = {}
    if settings.GHN_OURS_PATH and Path(settings.GHN_OURS_PATH).is_file():
        files["ours"] = Path(settings.GHN_OURS_PATH)
    folder = Path(settings.GHN_CHECKPOINT_DIR)
    if folder.is_dir():
        files.update((p.stem, p) for p in sorted(folder.glob("*.pt")))
    return files


def ghn_descriptions() -> dict[str, str]:
    """One line per available GHN, for the API and the predict form."""
    return {
        name: (
            "Weightspace's own GHN-3, meta-trained on Fashion-MNIST (28 x 28 grey images, "
            "10 classes) with DeepNets-style architectures"
            if name == "ours"
            else f"installed file {path.name}"
        )
        for name, path in ghn_files().items()
    }


def available_ghns() -> list[str]:
    """Names of the GHNs a predict job can use ("ours" first; see ``ghn_files``)."""
    return list(ghn_files())


class PredictParameters(serializers.Serializer):
    """Which GHN predicts, and what to do with the prediction."""

    ghn = serializers.CharField(max_length=100)
    evaluate_on = serializers.ChoiceField(
        choices=["", *BUILTIN_DATASETS], default="", required=False,
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
        installed = available_ghns()
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


PARAMETERS: dict[str, type[serializers.Serializer]] = {
    "train": TrainParameters,
    "predict": PredictParameters,
}


def clean_parameters(kind: str, raw: Any, owner: Any) -> dict[str, Any]:
    """The validated parameters for ``kind``; ``ValidationError`` (a 400) when they are bad."""
    serializer_class = PARAMETERS.get(kind)
    if serializer_class is None:
        if raw:
            raise serializers.ValidationError(f"A {kind} job takes no parameters.")
        return {}
    serializer = serializer_class(data=raw or {}, owner=owner)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
