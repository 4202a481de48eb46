"""Neuron labels of traced tensors: which neuron each element of an activation belongs to.

The traced parameter-graph builder (``traced``) follows every tensor of a forward pass with a
*label tensor*: a long tensor broadcastable to the value, holding at each element the node id
of the neuron (channel position) it belongs to, or ``NO_NEURON`` for values that belong to no
neuron (constants, token ids, statistics). Labels are kept *compact*: an axis along which they
do not change has size 1, so the labels of a ``[1, 64, 56, 56]`` feature map are ``[1, 64, 1,
1]`` and cost nothing to carry. Shape and indexing ops are applied to the labels themselves
(``apply``), which is how channel identity survives flatten, permute, concat, split and
channel shuffles without a rule per op.

A parameter read directly in the forward (a class token, a position embedding, a layer scale)
is followed the same way, with the *element index* of the parameter as label (``Val.param``
names it), until an op combines it with features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

NO_NEURON = -1


@dataclass(frozen=True)
class Val:
    """What the builder knows about one traced tensor.

    ``labels`` are neuron ids (or, with ``param`` set, element indices of that parameter);
    ``act`` is the last nonlinearity applied since the last parameterised layer (it tells a
    gate from the gated value in a product); ``embedding`` is the edge block of an embedding
    whose output has not been used yet (a second embedding added to it shares its neurons);
    ``scores`` marks attention scores ``q @ k^T`` (``attention.Scores``: which query and key
    neurons each head pairs), which hold no neurons but carry the heads to ``scores @ v``.
    """

    labels: Tensor
    param: str | None = None
    act: str | None = None
    embedding: Any = None
    scores: Any = None

    def with_labels(self, labels: Tensor) -> Val:
        """The same value with new (compacted) labels; a moved embedding output is used."""
        return replace(self, labels=compact(labels), embedding=None)

    @property
    def has_neurons(self) -> bool:
        """True when some element belongs to a neuron (always true for parameter values and
        attention scores)."""
        if self.param is not None or self.scores is not None:
            return True
        return bool((self.labels != NO_NEURON).any())


def compact(labels: Tensor) -> Tensor:
    """Shrink every axis along which ``labels`` do not change to size 1."""
    for axis in range(labels.dim()):
        if labels.shape[axis] > 1:
            first = labels.narrow(axis, 0, 1)
            if bool((labels == first).all()):
                labels = first
    return labels


def along(nodes: Tensor, axis: int, ndim: int) -> Tensor:
    """Compact labels of an ``ndim``-d tensor whose ``axis`` holds ``nodes``."""
    shape = [1] * ndim
    shape[axis] = len(nodes)
    return nodes.view(shape)


def full(labels: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """``labels`` expanded to the value's full shape (a view, no copy)."""
    return labels.expand(tuple(shape))


def varying_axes(labels: Tensor) -> list[int]:
    """Axes along which compact ``labels`` change."""
    return [axis for axis in range(labels.dim()) if labels.shape[axis] > 1]


def apply(fn: Callable[..., Any], labels: Tensor, *args: Any, **kwargs: Any) -> Any:
    """Run a shape/indexing op on labels as the forward ran it on the value."""
    return fn(labels, *args, **kwargs)


def pairs(a: Tensor, b: Tensor) -> Tensor:
    """Distinct ``(a, b)`` label pairs [2, P] where both hold (different) neurons."""
    a, b = torch.broadcast_tensors(a, b)
    mask = (a != NO_NEURON) & (b != NO_NEURON) & (a != b)
    if not bool(mask.any()):
        return torch.empty(2, 0, dtype=torch.long)
    return torch.unique(torch.stack([a[mask], b[mask]]), dim=1)


def is_bijection(p: Tensor) -> bool:
    """True when the pairs [2, P] join each left label to one right label and vice versa."""
    n = p.shape[1]
    return len(torch.unique(p[0])) == n and len(torch.unique(p[1])) == n


def merged(a: Tensor, b: Tensor, keep_b: bool) -> Tensor:
    """Labels of an elementwise result: where both operands have neurons, ``b``'s when
    ``keep_b`` (else ``a``'s); elsewhere whichever has one."""
    a, b = torch.broadcast_tensors(a, b)
    both = (a != NO_NEURON) & (b != NO_NEURON)
    either = torch.where(a != NO_NEURON, a, b)
    return compact(torch.where(both, b if keep_b else a, either))
