"""The node type of the GHN architecture graph, shared by the builder and the order rules.

It lives apart from :mod:`.build` so that :mod:`.order` (which ``build`` imports) can use it
without importing ``build`` back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.graphs.arch import ops


@dataclass
class ArchNode:
    """One node of the architecture graph.

    ``params`` lists the model parameters the node stands for as (name, shape) pairs, main
    tensor first (a norm node also carries the norm bias); op nodes have none. ``module`` is
    the dotted path of the module the node belongs to ("" for the model itself).
    """

    primitive: str
    name: str
    op: str
    module: str
    params: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)

    @property
    def primitive_idx(self) -> int:
        """Index of the primitive in the published GHN order."""
        return ops.PRIMITIVE_INDEX[self.primitive]

    @property
    def hierarchy(self) -> list[str]:
        """Enclosing module paths, outermost first: ["layer1", "layer1.0", "layer1.0.conv1"]."""
        if not self.module:
            return []
        parts = self.module.split(".")
        return [".".join(parts[: i + 1]) for i in range(len(parts))]
