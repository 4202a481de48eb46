"""Turning a job's inputs (model definition, uploaded data set, starting weights) into objects.

Built-in data sets are loaded by name with ``workers.data.load_builtin``.

Pure torch; every problem is a ``ModelError`` with a sentence for the person who asked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workers.data.datasets import TrainingData
from workers.errors import ModelError
from workers.safety.pickles import MAX_INFLATED


def model_builder(source: str, name: str = "", args: dict | None = None,
                  path: str | None = None) -> Callable[[], nn.Module]:  # fmt: skip
    """A function that builds the network: a zoo entry, or a checked ``.pt2`` archive.

    Python sources are inspected in a sandbox but not trained in the worker process; export
    them with ``torch.export`` and upload the archive instead.
    """
    if source == "zoo":
        from workers.zoo.build import build_model

        return lambda: build_model(name, args or {})
    if source == "export":
        from workers.safety.pt2 import check_pt2

        check_pt2(str(path))  # refuses anything torch.export.load could execute

        def load_export() -> nn.Module:
            return torch.export.load(str(path)).module()

        return load_export
    raise ModelError(
        "Models uploaded as Python source can be inspected but not trained: export the model "
        "with torch.export.save(torch.export.export(model, (x,)), 'model.pt2') and upload that."
    )


def load_weights(path: str, fmt: str) -> dict[str, torch.Tensor]:
    """Read a stored checkpoint: ``safetensors`` or a weights-only torch file."""
    if fmt == "safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError("The checkpoint is not a state dict (a mapping of names to tensors).")
    return state


def with_weights(build: Callable[[], nn.Module], state: dict[str, Any]) -> Callable[[], nn.Module]:
    """``build`` followed by loading ``state``, with a clear error when they do not match."""

    def build_and_load() -> nn.Module:
        model = build()
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [
            k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
        ]
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing[:5])}")
            if unexpected:
                parts.append(f"unexpected {', '.join(unexpected[:5])}")
            if wrong:
                parts.append(f"wrong shape for {', '.join(wrong[:5])}")
            raise ModelError("The checkpoint does not fit this model: " + "; ".join(parts) + ".")
        model.load_state_dict(state)
        return model

    return build_and_load


def uploaded_data(
    path: str | Path,
    fmt: str,
    *,
    name: str,
    context: int = 128,
    max_inflated: int = MAX_INFLATED,
) -> TrainingData:
    """An uploaded data set: ``npz`` arrays or ``text`` for a character-level model.

    ``max_inflated`` caps what an ``.npz``'s compressed members may inflate to; the train
    task passes the web tier's ``UPLOAD_MAX_INFLATED``, so both tiers hold it to one limit.
    """
    from workers.data.uploads import load_npz_dataset, load_text_dataset

    if fmt == "npz":
        return load_npz_dataset(path, name=name, max_inflated=max_inflated)
    return load_text_dataset(path, name=name, context=context)
