"""Generate ``workers/catalog/models.json``: run ``python -m workers.zoo.make_catalog``.

Every torchvision classification model and every built-in family is built once with its
default arguments on the meta device (no memory, no weights) to count parameters, to find out
which optional arguments it really accepts, and to check that a forward pass works at the
catalog's input shape. The JSON is written with ``indent=1`` so that diffs stay readable.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from workers.catalog.models import CATALOG_PATH, TORCHVISION_ARGS, builtin_input_shape
from workers.zoo.build import construct_on_meta
from workers.zoo.builtin import BUILTIN_SPECS, build_builtin

# Models whose architecture is defined for another resolution than 224x224.
# inception_v3 has no adaptive stem: 299x299 is the size its layer arithmetic was designed for.
SPECIAL_INPUT_SHAPES: dict[str, list[int]] = {"inception_v3": [3, 299, 299]}
DEFAULT_IMAGE_SHAPE = [3, 224, 224]
# A value no builder uses as its default, so finding it on an nn.Dropout proves the kwarg is
# wired through to the classifier.
PROBE_DROPOUT = 0.375


def torchvision_models() -> list[str]:
    """Names of all torchvision classification models (the top-level ``torchvision.models``)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_torchvision(name: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Build torchvision model ``name`` with random initialisation on the meta device.

    On meta no memory is allocated and initialisers are no-ops, which makes even the
    640M-parameter models instantaneous. Pretrained weights are never requested.
    """
    builder = torchvision.models.get_model_builder(name)
    return construct_on_meta(lambda: builder(weights=None, **(kwargs or {})))


def count_params(model: nn.Module) -> int:
    """Number of scalar parameters (buffers excluded), shared parameters counted once."""
    return sum(p.numel() for p in model.parameters())


def describe(builder: Any) -> str:
    """First paragraph of a torchvision builder docstring, with reStructuredText removed."""
    doc = inspect.getdoc(builder) or ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    # `Title <https://...>`_ -> Title (https://...)
    paragraph = re.sub(r"`([^`<]+?)\s*<([^>]+)>`_+", r"\1 (\2)", paragraph)
    # :class:`~a.b.C` -> C
    paragraph = re.sub(r":\w+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", paragraph)
    return paragraph.replace("``", "")


def torchvision_entry(name: str) -> dict[str, Any]:
    """Catalog entry for one torchvision model, verified by building it on the meta device."""
    model = build_torchvision(name).eval()
    shape = SPECIAL_INPUT_SHAPES.get(name, DEFAULT_IMAGE_SHAPE)
    # A forward pass on meta checks that the catalog's input shape suits the architecture.
    with torch.no_grad():
        model(torch.zeros(1, *shape, device="meta"))

    args = {"num_classes": TORCHVISION_ARGS["num_classes"]}
    if _accepts_dropout(name):
        args["dropout"] = TORCHVISION_ARGS["dropout"]
    return {
        "name": name,
        "family": "torchvision",
        "task": "classification",
        "description": describe(torchvision.models.get_model_builder(name)),
        "input_shape": shape,
        "input_dtype": "float32",
        "default_args": {"num_classes": 1000},
        "args": args,
        "num_params": count_params(model),
    }


def _accepts_dropout(name: str) -> bool:
    # Builders differ: some forward ``dropout`` to the classifier, some have no dropout at all
    # (TypeError), densenet calls it ``drop_rate``. Only offer it where it demonstrably works.
    try:
        model = build_torchvision(name, {"dropout": PROBE_DROPOUT})
    except TypeError:
        return False
    return any(isinstance(m, nn.Dropout) and m.p == PROBE_DROPOUT for m in model.modules())


def builtin_entry(name: str) -> dict[str, Any]:
    """Catalog entry for one built-in family, with its parameter count at default arguments."""
    spec = BUILTIN_SPECS[name]
    args = spec["default_args"]
    model = construct_on_meta(lambda: build_builtin(name, args))
    shape = builtin_input_shape(name, args)
    assert shape is not None, name
    return {
        "name": name,
        "family": "builtin",
        "task": "classification",
        "description": spec["description"],
        "input_shape": shape,
        "input_dtype": spec["input_dtype"],
        "default_args": args,
        "args": spec["args"],
        "num_params": count_params(model),
    }


def make_catalog() -> dict[str, Any]:
    """Build the whole catalog document (entries sorted by family, then name)."""
    entries = [builtin_entry(name) for name in BUILTIN_SPECS]
    for name in torchvision_models():
        print(f"  {name}", file=sys.stderr)
        entries.append(torchvision_entry(name))
    entries.sort(key=lambda e: (e["family"], e["name"]))
    return {
        "format": "weightspace.catalog/1",
        "torch": torch.__version__.split("+")[0],
        "torchvision": torchvision.__version__.split("+")[0],
        "models": entries,
    }


def main(path: Path = CATALOG_PATH) -> None:
    """Regenerate the catalog file at ``path``."""
    document = make_catalog()
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(document['models'])} models to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
