"""Laplacian eigenvector positional encodings of parameter graphs, cached per structure.

Convention (that of the NiNo reference, which uses PyG's ``AddLaplacianEigenvectorPE``):
self-loops are dropped, the graph is made undirected and unweighted (duplicate edges count
once), ``L = I - D^-1/2 A D^-1/2`` is built in float32, its eigenvectors are sorted by
eigenvalue, the first (trivial) one is dropped and the next ``k`` are kept. Graphs under 100
nodes use dense ``numpy.linalg.eigh`` on the float32 matrix exactly like the reference (so the
values match it bit for bit up to sign); larger ones use ARPACK (``scipy.sparse.linalg.eigsh``).

Eigenvectors have no canonical sign, and the parameter graph has highly degenerate eigenspaces
(neurons of a layer are interchangeable), so they are not canonical either. The reference
multiplies each column by a random sign; we fix the sign instead, so that the largest-magnitude
entry of each column is positive (the first such entry on ties), which makes results
reproducible. Compare encodings up to column sign, and within degenerate eigenspaces only by
the subspace they span.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# The reference switches from a dense to a sparse eigensolver at this many nodes.
SPARSE_THRESHOLD = 100

_CACHE: dict[str, Tensor] = {}


def structure_key(edge_index: Tensor, num_nodes: int) -> str:
    """A hash of the graph's connectivity: equal for equal architectures."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(str(num_nodes).encode())
    digest.update(edge_index.detach().to(torch.long).contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def normalized_laplacian(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sparse ``I - D^-1/2 A D^-1/2`` of the undirected simple graph, as (row, col, value).

    Values are float32 and computed in the reference's order of operations, so that the dense
    solver reproduces its eigenvectors exactly.
    """
    src, dst = edge_index[0].long(), edge_index[1].long()
    keep = src != dst
    src, dst = src[keep], dst[keep]
    # Both directions, duplicates merged: the unweighted undirected adjacency.
    keys = torch.unique(torch.cat([src * num_nodes + dst, dst * num_nodes + src]))
    row, col = keys // num_nodes, keys % num_nodes
    deg = torch.zeros(num_nodes, dtype=torch.float32).index_add_(
        0, row, torch.ones(len(row), dtype=torch.float32)
    )
    inv_sqrt = deg.pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    values = -(inv_sqrt[row] * inv_sqrt[col])
    diag = torch.arange(num_nodes)
    return (
        torch.cat([row, diag]),
        torch.cat([col, diag]),
        torch.cat([values, torch.ones(num_nodes, dtype=torch.float32)]),
    )


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    # Flip each column so that its largest-magnitude entry is positive.
    idx = np.abs(vectors).argmax(axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1
    return vectors * signs


def _eigenvectors(edge_index: Tensor, num_nodes: int, k: int) -> np.ndarray:
    import scipy.sparse as sp

    row, col, val = normalized_laplacian(edge_index, num_nodes)
    lap = sp.coo_matrix((val.numpy(), (row.numpy(), col.numpy())), shape=(num_nodes,) * 2)
    if num_nodes < SPARSE_THRESHOLD:
        values, vectors = np.linalg.eigh(lap.toarray())
    else:
        from scipy.sparse.linalg import eigsh

        # float64 and a fixed start vector: reproducible, and ARPACK converges more reliably
        # than in float32 on these strongly degenerate spectra.
        start = np.random.default_rng(0).standard_normal(num_nodes)
        values, vectors = eigsh(
            lap.astype(np.float64).tocsr(),
            k=min(k + 1, num_nodes - 1),
            which="SA",
            v0=start,
        )
    vectors = np.real(vectors[:, values.argsort()])[:, 1 : k + 1]
    if vectors.shape[1] < k:  # tiny graphs have fewer non-trivial eigenvectors than asked
        vectors = np.pad(vectors, ((0, 0), (0, k - vectors.shape[1])))
    return _fix_signs(vectors)


def laplacian_pe(
    edge_index: Tensor,
    num_nodes: int,
    k: int = 8,
    *,
    cache_dir: str | Path | None = None,
) -> Tensor:
    """Laplacian eigenvector positional encoding [num_nodes, k] (float32) of a graph.

    Results are cached in memory per structure (``structure_key``) and, with ``cache_dir``,
    on disk as ``lpe-<key>-<k>.pt``, since every model of one architecture shares them.
    """
    key = f"{structure_key(edge_index, num_nodes)}-{k}"
    if key in _CACHE:
        return _CACHE[key]
    path = Path(cache_dir) / f"lpe-{key}.pt" if cache_dir is not None else None
    if path is not None and path.exists():
        pe = torch.load(path, weights_only=True)
    else:
        pe = torch.from_numpy(np.ascontiguousarray(_eigenvectors(edge_index, num_nodes, k)))
        pe = pe.to(torch.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(pe, tmp)
            tmp.replace(path)  # atomic: concurrent workers never read half a file
    _CACHE[key] = pe
    return pe
