"""Blocks whose data flow the parameter graph knows, registered by the code that defines them.

The graph builder reads a model as a chain of layers. A block that is not a chain (a skip
connection, attention) needs a *handler* that adds its nodes and edges itself; whoever defines
the block registers one next to the class, at import time::

    from workers.graphs.params.registry import register_block

    class MyBlock(nn.Module): ...

    def my_block_edges(builder, block, inputs):
        hidden = builder.linear(block.fc1, inputs)
        ...
        return outputs

    register_block(MyBlock, my_block_edges)

Because the class's own module does the registering, every instance of it (built through the
zoo, constructed directly, unpickled) finds its handler: there is no instance without its
module having been imported. The graph package itself never imports model code.

Handlers are looked up by exact class, not by ``isinstance``: a subclass may change
``forward`` (and with it the data flow), so it has to be registered on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from torch import Tensor, nn

if TYPE_CHECKING:
    from workers.graphs.params.builder import GraphBuilder

#: ``handler(builder, module, inputs) -> outputs``: add ``module``'s nodes and edges through
#: the builder's methods; ``inputs`` are the neurons feeding it (None for a model's first
#: layer, or for a whole model), the result the neurons it outputs.
BlockHandler: TypeAlias = Callable[["GraphBuilder", nn.Module, Tensor | None], Tensor]

_HANDLERS: dict[type[nn.Module], BlockHandler] = {}


def register_block(module_class: type[nn.Module], handler: BlockHandler) -> BlockHandler:
    """Tell the parameter graph how ``module_class`` instances turn into nodes and edges.

    Registering the same handler again is a no-op (a module imported twice under two names,
    a reload); registering a different handler for a class that has one raises ``ValueError``,
    so that two libraries cannot silently disagree about a block. Returns ``handler``.
    """
    if not (isinstance(module_class, type) and issubclass(module_class, nn.Module)):
        raise TypeError(f"register_block needs an nn.Module subclass, not {module_class!r}")
    current = _HANDLERS.get(module_class)
    if current is not None and current is not handler:
        raise ValueError(
            f"{module_class.__qualname__} already has a parameter-graph handler "
            f"({_name(current)}); not replacing it with {_name(handler)}"
        )
    _HANDLERS[module_class] = handler
    return handler


def _name(handler: BlockHandler) -> str:
    return getattr(handler, "__qualname__", repr(handler))  # partials have no __qualname__


def block_handler(module_class: type[nn.Module]) -> BlockHandler | None:
    """The handler registered for exactly ``module_class``, or None."""
    return _HANDLERS.get(module_class)


def registered_blocks() -> tuple[type[nn.Module], ...]:
    """Every class with a handler, in registration order."""
    return tuple(_HANDLERS)
