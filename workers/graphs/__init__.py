"""Graphs extracted from PyTorch models, one package per kind.

* :mod:`.module` — module-level architecture graphs for the site (JSON-able);
* :mod:`.arch` — the GHN architecture graph (a typed DAG over GHN primitives);
* :mod:`.params` — the NiNo parameter graph (neurons as nodes, weights as edges).

Both graphs a network reads (``arch`` and ``params``) convert to and from PyG
``torch_geometric.data.Data`` (``to_pyg``/``from_pyg``). No package here imports model code:
blocks that are not chains of layers register their parameter-graph data flow themselves
(``workers.graphs.params.registry``).
"""
