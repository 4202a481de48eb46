"""Checks before a job is queued: does this model fit this data set, this accelerator, this GHN?

Everything is decided from what the web tier already knows, without torch: the inspection the
worker stored on the architecture (``Architecture.summary``: output shape, input dtype, NiNo
and GHN readiness), the model catalog for zoo entries not inspected yet, the data set catalog
and the ``summary`` of uploaded data sets, and the hypernetworks catalog's domains.

A check returns a :class:`Verdict`: *refusals* (the job would fail on the worker, so it is not
queued), *warnings* (it runs, but the person should know) and *notes* (what was checked).
Each is a sentence for the person. The kinds call these (``webapp.jobs.kinds``), so the form
on the architecture page and the API refuse alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from workers.catalog import DATASETS
from workers.catalog.hypernetworks import Domain, get_domain


@dataclass
class Verdict:
    """Sentences about a job before it exists."""

    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refusals

    def add(self, other: Verdict) -> Verdict:
        self.refusals += other.refusals
        self.warnings += other.warnings
        self.notes += other.notes
        return self


@dataclass(frozen=True)
class ModelFacts:
    """What is known about an architecture's shapes and readiness, and from where.

    ``inspected`` is false when the facts come from the catalog only (or are unknown);
    ``input_shape``/``output_shape`` are one example's (no batch axis); ``language_model``
    is true for models reading token ids; ``nino``/``ghn`` are the stored readiness
    documents (``{}`` when unknown).
    """

    name: str
    inspected: bool
    input_shape: list[int] | None
    output_shape: list[int] | None
    language_model: bool | None
    nino: dict[str, Any]
    ghn: dict[str, Any]
    layers: dict[str, int]
    zoo_name: str
    zoo_family: str
    zoo_args: dict[str, Any]
    # Hugging Face configs fall back to UTF-8 bytes when their vocabulary holds 256 ids but
    # not the text's characters (workers.data.text.fit_vocabulary); zoo models do not.
    reads_bytes: bool = False

    @property
    def convolutional(self) -> bool:
        """Whether the model reads images with convolutions (so any size may fit)."""
        if self.layers:
            return any(name.lower().startswith("conv") for name in self.layers)
        return self.zoo_family == "torchvision" or self.zoo_name in ("cnn", "cnn_residual")

    @property
    def width(self) -> int | None:
        """Outputs per example of a classifier; the vocabulary of a language model."""
        return self.output_shape[-1] if self.output_shape else None

    def takes(self, argument: str) -> bool:
        """Whether the zoo entry accepts ``argument`` (so the hint can name it)."""
        from workers.catalog.models import get_entry

        entry = get_entry(self.zoo_name) if self.zoo_name else None
        return bool(entry and argument in entry["args"])


@dataclass(frozen=True)
class DataFacts:
    """A data set's shape facts: ``text`` sets are character-level (``num_classes`` is then
    the vocabulary when known); else one example's ``input_shape`` and its classes."""

    label: str
    text: bool
    input_shape: list[int] | None
    num_classes: int | None
    download: bool = False


# ----------------------------------------------------------------------------- facts

BYTE_VOCAB = 256  # ids a byte-level vocabulary needs (as workers.data.text.BYTE_VOCAB)


def model_facts(architecture: Any) -> ModelFacts:
    """The facts about ``architecture``: its stored inspection over the catalog's defaults."""
    summary = architecture.summary or {}
    inspected = architecture.inspected_at is not None
    input_shape = architecture.input_shape if inspected else None
    output_shape = summary.get("output_shape")
    dtype = summary.get("input_dtype") if "input_dtype" in summary else None
    family, args = "", dict(architecture.zoo_args or {})
    if architecture.source == "zoo":
        catalog = _catalog_facts(architecture.zoo_name, args)
        family = catalog["family"]
        input_shape = input_shape or catalog["input_shape"]
        output_shape = output_shape or catalog["output_shape"]
        dtype = dtype or catalog["input_dtype"]
    return ModelFacts(
        name=architecture.name,
        inspected=inspected,
        input_shape=list(input_shape) if input_shape else None,
        output_shape=list(output_shape) if output_shape else None,
        language_model=None if dtype is None else dtype == "int64",
        nino=dict(summary.get("nino") or {}),
        ghn=dict(summary.get("ghn") or {}),
        layers=dict(summary.get("layers") or {}),
        zoo_name=architecture.zoo_name if architecture.source == "zoo" else "",
        zoo_family=family,
        zoo_args=args,
        reads_bytes=architecture.source == "hf_config"
        and bool(output_shape)
        and output_shape[-1] >= BYTE_VOCAB,
    )


def _catalog_facts(zoo_name: str, args: dict[str, Any]) -> dict[str, Any]:
    # What the catalog says of a zoo entry without building it: the input shape, and the
    # output width from its num_classes (or vocab_size and context for language models).
    from workers.catalog.models import get_entry, input_shape

    entry = get_entry(zoo_name)
    if entry is None:
        return {"family": "", "input_shape": None, "output_shape": None, "input_dtype": None}
    full = {**entry["default_args"], **args}
    try:
        shape = input_shape(zoo_name, args)
    except ValueError:
        shape = None
    dtype = entry.get("input_dtype", "float32")
    if dtype == "int64" and "vocab_size" in full:
        output = [full.get("context", shape[0] if shape else 1), full["vocab_size"]]
    elif "num_classes" in full:
        output = [full["num_classes"]]
    else:
        output = None
    return {"family": entry.get("family", ""), "input_shape": shape, "output_shape": output,
            "input_dtype": dtype}  # fmt: skip


def builtin_facts(name: str) -> DataFacts:
    """The facts of the built-in data set ``name`` (from ``workers.catalog.datasets``)."""
    entry = DATASETS[name]
    shape = getattr(entry, "input_shape", None)
    return DataFacts(
        label=short_label(entry.description),
        text=entry.text,
        input_shape=list(shape) if shape else None,
        num_classes=getattr(entry, "num_classes", None),
        download=bool(getattr(entry, "download", False)),
    )


def uploaded_facts(dataset: Any) -> DataFacts:
    """The facts of an uploaded ``Dataset`` row, from what its upload check stored."""
    summary = dataset.summary or {}
    if dataset.format == "text":
        return DataFacts(label=f"your data set '{dataset.name}'", text=True, input_shape=None,
                         num_classes=summary.get("vocabulary"))  # fmt: skip
    shape = summary.get("input_shape")
    return DataFacts(
        label=f"your data set '{dataset.name}'",
        text=False,
        input_shape=list(shape) if shape else None,
        num_classes=summary.get("classes"),
    )


def data_facts(parameters: dict[str, Any], owner: Any) -> DataFacts | None:
    """The facts of the data set a train job's ``parameters`` name; None when none is named."""
    if parameters.get("dataset"):
        return builtin_facts(parameters["dataset"])
    if parameters.get("dataset_id"):
        from webapp.datasets.models import Dataset

        row = Dataset.objects.filter(pk=parameters["dataset_id"], owner=owner).first()
        return uploaded_facts(row) if row else None
    return None


def short_label(description: str) -> str:
    """The name part of a catalog description ("Fashion-MNIST: 55k/10k …" → "Fashion-MNIST",
    "Shakespeare's plays, character-level (…)" → "Shakespeare's plays")."""
    for separator in (":", " (", ", "):
        description = description.split(separator, 1)[0]
    return description.strip()


def shape_label(shape: list[int] | tuple[int, ...] | None) -> str:
    return "×".join(str(d) for d in shape) if shape else "?"


# ----------------------------------------------------------------------------- checks


def not_inspected(model: ModelFacts) -> Verdict:
    """The warning for a model whose shapes nobody has traced yet."""
    verdict = Verdict()
    if not model.inspected:
        if model.zoo_name:
            verdict.notes.append(
                "Not inspected yet: the shapes below come from the model catalog; press "
                "Inspect to check NiNo and GHN support too."
            )
        else:
            verdict.warnings.append(
                "This model is not inspected yet, so nothing could be checked here: its shapes "
                "are checked when the job starts. Press Inspect first to know before."
            )
    return verdict


def check_data(model: ModelFacts, data: DataFacts) -> Verdict:
    """Can ``model`` read ``data`` and does its output fit the labels?"""
    verdict = Verdict()
    if model.language_model is None and model.input_shape is None:
        return verdict  # nothing known (not inspected): not_inspected() says so
    if data.text:
        if model.language_model is False:
            verdict.refusals.append(
                f"{data.label} is character-level text: it needs a language model (the zoo's "
                f"transformer or llama), but {model.name} is a classifier of "
                f"{shape_label(model.input_shape)} inputs."
            )
        elif (
            model.width is not None and data.num_classes and model.width < data.num_classes
            and model.reads_bytes
        ):  # fmt: skip
            verdict.notes.append(
                f"{data.label} has {data.num_classes} distinct characters, more than the "
                f"vocabulary of {model.width}: it is trained on the text's UTF-8 bytes."
            )
        elif model.width is not None and data.num_classes and model.width < data.num_classes:
            verdict.refusals.append(
                f"{model.name} has a vocabulary of {model.width}, but {data.label} has "
                f"{data.num_classes} distinct characters."
                + (" Add the model again with a larger vocab_size." if model.zoo_name else "")
            )
        elif model.language_model:
            verdict.notes.append(f"{data.label}: character-level text for a language model.")
        return verdict
    if model.language_model:
        verdict.refusals.append(
            f"{model.name} is a language model reading token ids; {data.label} holds "
            f"{shape_label(data.input_shape)} arrays for classification. Pick a text data set."
        )
        return verdict
    verdict.add(_check_input(model, data))
    verdict.add(_check_classes(model, data))
    if verdict.ok and not verdict.warnings:
        verdict.notes.append(
            f"{data.label} fits: {shape_label(data.input_shape)} inputs, "
            f"{data.num_classes} classes."
        )
    return verdict


def _check_input(model: ModelFacts, data: DataFacts) -> Verdict:
    verdict = Verdict()
    ours, theirs = model.input_shape, data.input_shape
    if not ours or not theirs or list(ours) == list(theirs):
        return verdict
    if not model.convolutional:
        # A fully connected model flattens its input: only the number of values matters.
        if math.prod(ours) != math.prod(theirs):
            verdict.refusals.append(
                f"{model.name} reads {math.prod(ours):,} values per example "
                f"({shape_label(ours)}), but {data.label} has {math.prod(theirs):,} "
                f"({shape_label(theirs)})."
            )
        return verdict
    if len(ours) != len(theirs):
        verdict.refusals.append(
            f"{model.name} takes inputs shaped {shape_label(ours)}, but {data.label} has "
            f"inputs shaped {shape_label(theirs)}: a convolution cannot read them."
        )
        return verdict
    if len(ours) == 3 and ours[0] != theirs[0]:
        hint = (
            f" Add the model again with in_channels={theirs[0]}, or pick a data set with "
            f"{ours[0]}-channel images."
            if model.takes("in_channels")
            else f" Pick a data set with {ours[0]}-channel images."
        )
        verdict.refusals.append(
            f"{model.name} takes {ours[0]}-channel {shape_label(ours[1:])} images, but "
            f"{data.label} has {theirs[0]}-channel {shape_label(theirs[1:])} images: its first "
            f"layer cannot read them.{hint}"
        )
    elif list(ours[1:]) != list(theirs[1:]):
        verdict.warnings.append(
            f"{model.name} was traced with {shape_label(ours[1:])} inputs; {data.label}'s are "
            f"{shape_label(theirs[1:])}. Networks that pool globally (most convolutional ones) "
            "take any size; others fail when the job starts."
        )
    return verdict


def _check_classes(model: ModelFacts, data: DataFacts) -> Verdict:
    verdict = Verdict()
    if model.width is None or not data.num_classes or model.width == data.num_classes:
        return verdict
    hint = (
        f" Add the model again with num_classes={data.num_classes}."
        if model.takes("num_classes")
        else f" Give the model a {data.num_classes}-way output layer."
    )
    verdict.refusals.append(
        f"{model.name}'s output layer has {model.width:,} outputs, but {data.label} has "
        f"{data.num_classes} classes.{hint}"
    )
    return verdict


def check_accelerator(model: ModelFacts, accelerator: str) -> Verdict:
    """Can the accelerator (NiNo, WNN+: both read the parameter graph) run on ``model``?"""
    from workers.catalog import ACCELERATORS

    verdict = Verdict()
    entry = ACCELERATORS.get(accelerator)
    if entry is None or entry.checkpoint is None:
        return verdict
    nino = model.nino
    if not nino:
        verdict.warnings.append(
            "Whether NiNo can read this model is known once it is inspected (again, for an "
            "inspection older than these checks); until then a model it cannot read fails "
            "when training starts."
        )
        return verdict
    total, nowcast = nino.get("total"), nino.get("nowcast")
    if isinstance(total, int) and isinstance(nowcast, int) and total > 0:
        share = nowcast / total
        if nowcast == 0:
            verdict.refusals.append(
                f"NiNo cannot nowcast any parameter of {model.name}: "
                f"{nino.get('reason') or _left(nino)}. "
                "Pick the accelerator 'None (plain optimizer)'."
            )
        elif nowcast < total:
            verdict.warnings.append(
                f"NiNo nowcasts {nowcast:,} of {total:,} parameters ({share:.0%}); the rest "
                f"follow the base optimizer only{_left(nino, prefix=' (')}."
            )
        else:
            verdict.notes.append(f"NiNo nowcasts all {total:,} parameters.")
        return verdict
    if not nino.get("supported"):
        verdict.refusals.append(
            f"NiNo cannot read {model.name}: {nino.get('reason') or 'unsupported layers'}. "
            "Pick the accelerator 'None (plain optimizer)', or a model NiNo reads."
        )
    else:
        verdict.notes.append("NiNo reads every parameter of this model.")
    return verdict


def _left(nino: dict[str, Any], prefix: str = "") -> str:
    left = nino.get("left") or []
    if not left:
        return ""
    names = ", ".join(row.get("name", "?") for row in left[:3])
    more = f" and {len(left) - 3} more" if len(left) > 3 else ""
    text = f"left out: {names}{more}"
    return f"{prefix}{text})" if prefix else text


def check_train(architecture: Any, parameters: dict[str, Any], owner: Any) -> Verdict:
    """Everything about a train job with validated ``parameters`` before it is queued."""
    model = model_facts(architecture)
    verdict = not_inspected(model)
    data = data_facts(parameters, owner)
    if data is not None:
        verdict.add(check_data(model, data))
    verdict.add(check_accelerator(model, parameters.get("accelerator", "none")))
    return verdict


# ----------------------------------------------------------------------------- GHN


def check_ghn(model: ModelFacts, ghn: str) -> Verdict:
    """Can a GHN read ``model``, and is ``model`` inside the GHN's domain?"""
    verdict = Verdict()
    if model.ghn and not model.ghn.get("supported"):
        verdict.refusals.append(
            f"A Graph HyperNetwork cannot read {model.name}: {model.ghn.get('reason')}."
        )
        return verdict
    if model.language_model:
        verdict.warnings.append(
            f"{model.name} is a language model; the GHNs here were meta-trained on image "
            "classifiers, so expect little from the prediction."
        )
        return verdict
    domain = get_domain(ghn)
    if domain is None:
        verdict.warnings.append(
            f"No domain is recorded for the GHN '{ghn}', so nothing says what it predicts well."
        )
        return verdict
    verdict.add(_check_domain(model, ghn, domain))
    return verdict


def _check_domain(model: ModelFacts, ghn: str, domain: Domain) -> Verdict:
    verdict = Verdict()
    outside = []
    shape = model.input_shape
    if shape and len(shape) == 3:
        if shape[0] != domain.input_shape[0]:
            outside.append(f"{shape[0]}-channel inputs (it saw {domain.input_shape[0]})")
        elif list(shape[1:]) != list(domain.input_shape[1:]):
            outside.append(
                f"{shape_label(shape[1:])} images (it saw {shape_label(domain.input_shape[1:])})"
            )
    elif shape:
        outside.append(f"{shape_label(shape)} inputs (it saw {domain.shape_label} images)")
    if model.width is not None and model.width != domain.num_classes:
        outside.append(f"{model.width:,} classes (it saw {domain.num_classes:,})")
    if model.zoo_family == "torchvision" and ghn == "ours":
        outside.append("a torchvision design, far from the DeepNets cells it saw")
    if outside:
        verdict.warnings.append(
            f"Outside the domain of '{ghn}' ({domain.shape_label} {domain.data} images, "
            f"{domain.num_classes:,} classes): {model.name} has " + "; ".join(outside)
            + ". Expect an accuracy close to random initialisation."
        )
    if domain.bn_free and model.layers and not any("BatchNorm" in k for k in model.layers):
        m = domain.bn_free
        verdict.warnings.append(
            f"{model.name} has no BatchNorm; '{ghn}' measured {m.accuracy:.1%} on "
            f"{m.architectures} against {m.random:.1%} for random init."
        )
    return verdict


def check_predict(architecture: Any, parameters: dict[str, Any], owner: Any) -> Verdict:
    """Everything about a predict job with validated ``parameters`` before it is queued:
    the GHN, the data set accuracy is measured on, and the train job to follow."""
    model = model_facts(architecture)
    verdict = not_inspected(model)
    verdict.add(check_ghn(model, parameters.get("ghn", "")))
    evaluate_on = parameters.get("evaluate_on")
    if evaluate_on:
        data = builtin_facts(evaluate_on)
        if data.text:
            verdict.refusals.append(
                f"Accuracy is measured on image or array classification; {data.label} is text."
            )
        else:
            verdict.add(_prefixed(check_data(model, data), "Measuring accuracy: "))
    else:
        verdict.notes.append(
            "Accuracy will not be measured, so nothing will say how good the prediction is."
        )
    then_train = parameters.get("then_train")
    if then_train:
        follow = Verdict()
        data = data_facts(then_train, owner)
        if data is not None and then_train.get("dataset") != evaluate_on:
            follow.add(check_data(model, data))
        follow.add(check_accelerator(model, then_train.get("accelerator", "none")))
        verdict.add(_prefixed(follow, "Then train: "))
    return verdict


def _prefixed(verdict: Verdict, prefix: str) -> Verdict:
    return Verdict(
        refusals=[prefix + s for s in verdict.refusals],
        warnings=[prefix + s for s in verdict.warnings],
        notes=[prefix + s for s in verdict.notes],
    )


def fitting_builtin(model: ModelFacts, *, images_only: bool = False) -> str | None:
    """The first built-in data set ``model`` can train on (no refusal, no warning), those on
    disk before those downloaded on first use; None when none fits."""
    names = sorted(DATASETS, key=lambda n: builtin_facts(n).download)
    for name in names:
        data = builtin_facts(name)
        if images_only and data.text:
            continue
        verdict = check_data(model, data)
        if verdict.ok and not verdict.warnings and (data.text or data.input_shape):
            return name
    return None


def supports(model: ModelFacts) -> list[tuple[str, str, str]]:
    """What the page shows next to the forms: ``(topic, level, sentence)`` rows, level one of
    "info" (a fact), "ok", "partial", "no", "unknown"."""
    rows = []
    if model.language_model:
        what = f"token ids, {model.input_shape[0] if model.input_shape else '?'} per window"
        rows.append(("Input", "info", what))
        rows.append(("Output", "info", f"vocabulary of {model.width or '?'}"))
    elif model.input_shape:
        rows.append(("Input", "info", shape_label(model.input_shape)))
        if model.width is not None:
            rows.append(("Output", "info", f"{model.width:,} classes"))
    nino = model.nino
    if not nino:
        rows.append(("NiNo", "unknown", "known once inspected"))
    elif isinstance(nino.get("total"), int) and isinstance(nino.get("nowcast"), int):
        total, nowcast = nino["total"], nino["nowcast"]
        level = "ok" if nowcast == total else ("partial" if nowcast else "no")
        share = f" ({nowcast / total:.0%})" if total else ""
        rows.append(("NiNo", level, f"nowcasts {nowcast:,} of {total:,} parameters{share}"))
    elif nino.get("supported"):
        rows.append(("NiNo", "ok", "reads every parameter"))
    else:
        rows.append(("NiNo", "no", nino.get("reason") or "cannot read this model"))
    ghn = model.ghn
    if not ghn:
        rows.append(("GHN", "unknown", "known once inspected"))
    elif ghn.get("supported"):
        rows.append(("GHN", "ok", "the architecture graph was built"))
    else:
        rows.append(("GHN", "no", ghn.get("reason") or "no architecture graph"))
    return rows
