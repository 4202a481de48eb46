"""Small tensor helpers shared by the engine's pipelines and trainers."""

from __future__ import annotations

import torch
from torch import nn


def cpu_state_dict(module: nn.Module, *, copy: bool = False) -> dict[str, torch.Tensor]:
    """``module``'s state dict detached, on the CPU and contiguous: ready for ``torch.save``
    or ``safetensors``, wherever the module lives.

    The tensors of a CPU module share memory with it (no copy is made for nothing). With
    ``copy`` every tensor is a fresh one of its own: later training does not change it, and a
    saved file holds only each tensor's elements, never a larger storage it is a view of.
    """
    return {
        name: value.detach().to("cpu", copy=copy).contiguous()
        for name, value in module.state_dict().items()
    }


def without_aliases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each shared tensor under its first name only (a tied language-model head
    is the embedding under a second name): safetensors refuses to write aliases, and
    transformers, like ``workers.zoo.hf.load_hf_weights``, expects a tied head to be absent."""
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    unique = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        unique[name] = tensor
    return unique
