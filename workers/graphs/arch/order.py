"""Node order conventions of the published GHNs, which the architecture graph follows."""

from __future__ import annotations

from workers.graphs.arch.nodes import ArchNode


def reference_order(
    n: int, edges: set[tuple[int, int]], ranks: list[float], side_of: dict[int, int]
) -> list[int]:
    """Topological order by generations, as networkx's ``topological_sort`` gives it.

    Generation 0 is every node without inputs by increasing rank; each next generation scans
    the previous one in order and each node's successors by increasing rank, taking a
    successor once all its inputs are placed. ``pos_enc`` nodes are left out and placed right
    before the ``sum`` they feed, where the published code inserts that sum.
    """
    succs: list[list[int]] = [[] for _ in range(n)]
    indegree = [0] * n
    for s, t in edges:
        if s in side_of:
            continue
        succs[s].append(t)
        indegree[t] += 1
    for out in succs:
        out.sort(key=lambda v: ranks[v])
    generation = sorted(
        (v for v in range(n) if indegree[v] == 0 and v not in side_of), key=lambda v: ranks[v]
    )
    order: list[int] = []
    sides = {total: pos for pos, total in side_of.items()}
    while generation:
        following: list[int] = []
        for v in generation:
            if v in sides:
                order.append(sides[v])
            order.append(v)
            for w in succs[v]:
                indegree[w] -= 1
                if indegree[w] == 0:
                    following.append(w)
        generation = following
    if len(order) != n:
        raise ValueError("the traced graph has a cycle")
    return order


def move_pool_before_classifier(nodes: list[ArchNode], edges: set[tuple[int, int]]) -> None:
    """Relabel a trailing weight -> bias -> global pool chain as pool -> weight -> bias."""
    if len(nodes) < 3:
        return
    n = len(nodes)
    w, b, g = n - 3, n - 2, n - 1
    chain = {(w, b), (b, g)}
    if (
        nodes[g].primitive == "glob_avg"
        and nodes[w].primitive in ("conv", "sep_conv", "dil_conv")
        and nodes[b].primitive == "bias"
        and chain <= edges
    ):
        nodes[w], nodes[b], nodes[g] = nodes[g], nodes[w], nodes[b]
