"""Tracing for the traced parameter-graph builder (``traced``): torch.fx with whole layers.

Parameterised ``torch.nn`` layers (``Linear``, convolutions, norms, ``Embedding``,
``nn.MultiheadAttention``, and subclasses that keep their forward) stay single ``call_module``
nodes; everything else is traced into its functional ops. Also: guessed example inputs, eval
mode for the trace, and how nodes are named in messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, fx, nn

from workers.errors import ModelError
from workers.graphs.params.builder import _NORM_LAYERS

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LAYER_TYPES = (nn.Linear, *_CONVS, nn.Embedding, nn.MultiheadAttention, *_NORM_LAYERS)



class ShapeError(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def is_layer(module: nn.Module) -> bool:
    """A parameterised torch.nn layer read whole (subclasses that keep its forward too)."""
    for base in _LAYER_TYPES:
        if isinstance(module, base) and type(module).forward is base.forward:
            return True
    return False


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if is_layer(m):
            return True
        # Other torch.nn modules with their own parameters (PReLU ...) stay whole so that the
        # reader can name them; parameter-free ones are traced into their functional ops.
        own = next(m.parameters(recurse=False), None) is not None
        return own and type(m).__module__.startswith("torch.nn")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    training = {m: m.training for m in model.modules()}
    with contextlib.suppress(NotImplementedError):
        # Trace the inference data flow (no dropout branches, no aux heads). Exported
        # programs refuse eval(): their train/eval behaviour was fixed at export.
        model.eval()
    try:
        yield
    finally:
        for m, mode in training.items():
            m.training = mode


def trace(model: nn.Module) -> fx.GraphModule:
    """The fx trace of ``model``; for a token model fx cannot trace (Hugging Face causal LMs
    branch on tensor values), its ``torch.export`` program instead (``meta["example"]`` holds
    the token batch it was exported with)."""
    from workers.graphs.module.traced import _defaults_beyond

    with eval_mode(model):
        try:
            tracer = _Tracer()
            graph = tracer.trace(model, concrete_args=_defaults_beyond(model, 1))
        except Exception as exc:  # noqa: BLE001 - fx raises many kinds of errors
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            exported = _exported(model)
            if exported is not None:
                return exported
            raise ModelError(
                f"The model's forward cannot be traced ({message[:200]}); the parameter graph "
                "reads the data flow from a torch.fx trace."
            ) from exc
    return fx.GraphModule(tracer.root, graph)


def _exported(model: nn.Module) -> fx.GraphModule | None:
    """``torch.export`` of a model whose first layer is an ``Embedding`` (token ids in), or
    None. The exported program is aten ops; parameters stay ``get_attr`` nodes by name."""
    first = next((m for m in model.modules() if is_layer(m)), None)
    if not isinstance(first, nn.Embedding):
        return None
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    for length in (8, 4, 1):  # a window shorter than the model's context
        example = torch.zeros(1, length, dtype=torch.long, device=device)
        try:
            gm = torch.export.export(model, (example,), strict=False).module()
        except Exception:  # noqa: BLE001 - then the fx reason is the one to report
            continue
        gm.meta["example"] = example
        return gm
    return None


def first_layer(gm: fx.GraphModule) -> nn.Module | None:
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_module" and is_layer(modules[node.target]):
            return modules[node.target]
    return None


def candidate_examples(model: nn.Module, gm: fx.GraphModule) -> Iterator[Tensor]:
    """Input batches to try, from the first layer's type and width (one image size each)."""
    first = first_layer(gm)
    if isinstance(first, nn.Embedding):
        yield torch.zeros(1, 8, dtype=torch.long)
        return
    if isinstance(first, nn.Linear):
        yield torch.zeros(1, first.in_features)
    channels = first.in_channels if isinstance(first, _CONVS) else 3
    dims = first.weight.dim() - 2 if isinstance(first, _CONVS) else 2
    # Common sizes first; then every small size, for a Linear after a flatten that fixes it.
    sizes = [getattr(model, "image_size", None), 224, 28, 32, 64, 299, 96, *range(1, 65)]
    for size in dict.fromkeys(s for s in sizes if isinstance(s, int)):
        yield torch.zeros(1, channels, *([size] * dims))



def where(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1]
        path = path[0] if isinstance(path, tuple) else path
        if path:
            return f"{node.name} in {path}"
    return node.name


def op_name(node: fx.Node) -> str:
    target = node.target
    if node.op == "call_method":
        return str(target).rstrip("_")
    if isinstance(target, torch._ops.OpOverload):  # exported (aten) programs
        name = target._opname
        return name if name.startswith("_") else name.rstrip("_")
    name = getattr(target, "__name__", str(target))
    return name.rstrip("_") if name not in ("__add__", "__mul__") else name.strip("_")
