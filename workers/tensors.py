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


def state_mismatch(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
    required: list[str] | None = None,
) -> str:
    """What keeps ``state`` from loading into a model whose state is ``expected``, as a
    clause ("missing a, b; unexpected c; wrong shape for d"), or "" when it fits.
    ``required``: the names that must be present (default: every expected name)."""
    missing = sorted(name for name in (required or expected) if name not in state)
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:5])}")
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected[:5])}")
    if wrong:
        parts.append(f"wrong shape for {', '.join(wrong[:5])}")
    return "; ".join(parts)
