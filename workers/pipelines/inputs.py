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
from workers.tensors import state_mismatch


def model_builder(source: str, name: str = "", args: dict | None = None,
                  path: str | None = None) -> Callable[[], nn.Module]:  # fmt: skip
    """A function that builds the network: a zoo entry, a checked ``.pt2`` archive, or a
    Hugging Face causal LM from a checked ``config.json`` (``workers.zoo.hf``).

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
            return switchable_modes(torch.export.load(str(path)).module())

        return load_export
    if source == "hf_config":
        from workers.zoo.hf import build_hf_model, load_config

        config = load_config(str(path))  # checked as on upload, read once
        return lambda: build_hf_model(config)
    raise ModelError(
        "Models uploaded as Python source can be inspected but not trained: export the model "
        "with torch.export.save(torch.export.export(model, (x,)), 'model.pt2') and upload that."
    )


# Exported ops whose behaviour depends on train/eval mode, and the index of that flag.
_MODE_ARGS = {"aten.batch_norm.default": 5, "aten.dropout.default": 2}


def switchable_modes(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """An unlifted ``.pt2`` program whose ``train()``/``eval()`` work again.

    ``ExportedProgram.module()`` refuses both (the graph has the mode it was exported in baked
    into its batch-norm and dropout ops), yet training needs batch statistics and evaluation
    the running ones. Here ``train(mode)`` rewrites those ops' flag and recompiles; a deep copy
    (each run of a job trains one) gets the same methods through fx's deepcopy hook.
    """
    import types

    def set_mode(self: torch.fx.GraphModule, mode: bool = True) -> torch.fx.GraphModule:
        changed = False
        for node in self.graph.nodes:
            index = _MODE_ARGS.get(str(node.target)) if node.op == "call_function" else None
            if index is not None and len(node.args) > index and node.args[index] != mode:
                node.args = (*node.args[:index], mode, *node.args[index + 1 :])
                changed = True
        if changed:
            self.recompile()
        for submodule in self.modules():
            submodule.training = mode
        return self

    module.train = types.MethodType(set_mode, module)  # type: ignore[method-assign]
    module.eval = types.MethodType(lambda self: set_mode(self, False), module)  # type: ignore[method-assign]
    if switchable_modes not in module._deepcopy_hooks:
        module._register_deepcopy_hook(switchable_modes)
    return module


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
        mismatch = state_mismatch(model.state_dict(), state)
        if mismatch:
            raise ModelError(f"The checkpoint does not fit this model: {mismatch}.")
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
    """An uploaded data set: ``npz`` arrays, an ``images`` folder zip, or ``text`` for a
    character-level model.

    ``max_inflated`` caps what an archive's compressed members may inflate to; the train
    task passes the web tier's ``UPLOAD_MAX_INFLATED``, so both tiers hold it to one limit.
    """
    from workers.data.uploads import load_npz_dataset, load_text_dataset

    if fmt == "images":
        from workers.data.image_folder import load_image_folder

        return load_image_folder(path, name=name, max_inflated=max_inflated)
    if fmt == "npz":
        return load_npz_dataset(path, name=name, max_inflated=max_inflated)
    return load_text_dataset(path, name=name, context=context)
