"""Tracing for the architecture graph: one forward pass under autograd.

Besides the autograd graph itself this records, for every autograd node, the innermost module
whose forward created it (from forward hooks, or from ``nn_module_stack`` metadata when the
model is an exported ``torch.fx.GraphModule``), so op nodes can be shown inside their blocks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.utils._pytree import tree_flatten


@dataclass
class Trace:
    """What one traced forward pass left behind."""

    outputs: list[Any]  # grad_fns of the output tensors
    example: Tensor
    param_names: dict[int, str]  # id(parameter) -> name
    module_of: dict[Any, str]  # autograd node -> innermost module path it was created in


def _sequence_mark() -> int:
    """The next autograd sequence number: nodes created from now on get numbers >= this."""
    probe = torch.zeros((), requires_grad=True) * 1
    return probe.grad_fn._sequence_nr() + 1  # type: ignore[union-attr]


def _mark_module(outputs: Any, start: int, path: str, module_of: dict[Any, str]) -> None:
    """Attribute autograd nodes created since ``start`` and feeding ``outputs`` to ``path``.

    Called innermost module first (forward hooks fire on the way out), so nodes that already
    have a module keep the more specific one.
    """
    stack = [t.grad_fn for t in tree_flatten(outputs)[0] if isinstance(t, Tensor)]
    # Keyed by id but holding the object: autograd wrappers that die could have their id reused.
    seen: dict[int, Any] = {}
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen[id(fn)] = fn
        seq = fn._sequence_nr()
        if type(fn).__name__ == "AccumulateGrad" or seq < start:
            continue
        module_of.setdefault(fn, path)
        stack.extend(u for u, _ in fn.next_functions)


@contextlib.contextmanager
def _tracing_state(model: nn.Module) -> Iterator[None]:
    """Eval mode and grad-requiring parameters for the pass; both restored afterwards."""
    training = {m: m.training for m in model.modules()}
    # Only floating-point tensors can require grad (an integer parameter would raise).
    requires = {p: p.requires_grad for p in model.parameters() if p.is_floating_point()}
    with contextlib.suppress(NotImplementedError):
        # Exported programs refuse eval(): their train/eval behaviour was fixed at export.
        model.eval()
    for p in requires:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        for m, mode in training.items():
            m.training = mode
        for p, flag in requires.items():
            p.requires_grad_(flag)


def _default_example(model: nn.Module, device: torch.device) -> Tensor:
    """An input for a model given without one: the first placeholder of an exported program,
    else an ImageNet-sized image batch."""
    if isinstance(model, fx.GraphModule):
        for node in model.graph.nodes:
            val = node.meta.get("val")
            if node.op == "placeholder" and isinstance(val, Tensor):
                # Exported programs record fake tensors; a symbolic (dynamic) size takes the
                # size it was exported with, or 2.
                shape = [s if isinstance(s, int) else _size_hint(s) for s in val.shape]
                if val.dtype.is_floating_point:
                    return torch.randn(shape, dtype=val.dtype, device=device)
                return torch.zeros(shape, dtype=val.dtype, device=device)
    size = 299 if type(model).__name__ == "Inception3" else 224
    return torch.randn(2, 3, size, size, device=device)


def _size_hint(size: Any) -> int:
    hint = getattr(getattr(size, "node", None), "hint", None)
    return int(hint) if isinstance(hint, int) and hint > 0 else 2


class _ModuleTracer(fx.Interpreter):
    """Runs an exported GraphModule node by node so op nodes get their original module path."""

    def __init__(self, gm: fx.GraphModule, module_of: dict[Any, str]) -> None:
        super().__init__(gm)
        self.module_of = module_of

    def run_node(self, n: fx.Node) -> Any:
        start = _sequence_mark()
        result = super().run_node(n)
        stack = n.meta.get("nn_module_stack") or {}
        if stack:
            path = list(stack.values())[-1][0]
            _mark_module(result, start, _clean_export_path(str(path)), self.module_of)
        return result


def _clean_export_path(path: str) -> str:
    # nn_module_stack paths look like "layer1.0.conv1" (or "L['self'].layer1..." in old
    # versions); keep the plain dotted path.
    if path.startswith("L['self']"):
        path = path[len("L['self']") :].lstrip(".")
    return path


def trace_model(model: nn.Module, example: Tensor | None) -> Trace:
    """Run ``model`` once on ``example`` (or a default input) and record its autograd graph."""
    params = dict(model.named_parameters(remove_duplicate=True))
    device = next(iter(params.values())).device if params else torch.device("cpu")
    if example is None:
        example = _default_example(model, device)
    example = example.detach().to(device)
    if example.dtype.is_floating_point:
        # A leaf that requires grad makes "reads the model input" visible in the autograd graph.
        example = example.requires_grad_(True)
    module_of: dict[Any, str] = {}
    handles = []
    starts: dict[int, list[int]] = {}

    def pre_hook(module: nn.Module, args: Any) -> None:
        starts.setdefault(id(module), []).append(_sequence_mark())

    def make_post_hook(path: str) -> Any:
        def post_hook(module: nn.Module, args: Any, output: Any) -> None:
            _mark_module(output, starts[id(module)].pop(), path, module_of)

        return post_hook

    with _tracing_state(model):
        try:
            for path, module in model.named_modules():
                if path:
                    handles.append(module.register_forward_pre_hook(pre_hook))
                    handles.append(module.register_forward_hook(make_post_hook(path)))
            start = _sequence_mark()
            if isinstance(model, fx.GraphModule) and _has_module_stacks(model):
                output = _ModuleTracer(model, module_of).run(example)
            else:
                output = model(example)
            _mark_module(output, start, "", module_of)
        finally:
            for handle in handles:
                handle.remove()
    tensors = [t for t in tree_flatten(output)[0] if isinstance(t, Tensor)]
    outputs = [t.grad_fn for t in tensors if t.grad_fn is not None]
    if not outputs:
        raise ValueError("the model output does not depend on its parameters or input")
    return Trace(
        outputs=outputs,
        example=example,
        param_names={id(p): name for name, p in params.items()},
        module_of=module_of,
    )


def _has_module_stacks(gm: fx.GraphModule) -> bool:
    return any(n.meta.get("nn_module_stack") for n in gm.graph.nodes)
