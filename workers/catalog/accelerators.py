"""Accelerators a train job (and ``bench/nino.py``) can use, and the meta-model each loads.

A new accelerator is one entry here: ``checkpoint`` is a name that
``workers.nino.load_model`` resolves (a published file in ``$NINO_CHECKPOINT_DIR``, or
``nino_ours``, the project's own weights); ``None`` means the plain optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.catalog.registry import lookup


@dataclass(frozen=True)
class Accelerator:
    """One way of accelerating the base optimizer."""

    name: str
    label: str
    checkpoint: str | None  # meta-model to load; None: the plain optimizer


ACCELERATORS: dict[str, Accelerator] = {
    entry.name: entry
    for entry in [
        Accelerator("none", "None: the plain optimizer", None),
        Accelerator("nino", "NiNo, published checkpoint (nino_no_posw)", "nino_no_posw"),
        Accelerator(
            "ours",
            "NiNo, our own meta-trained weights (small; see workers/nino/weights/manifest.json)",
            "nino_ours",
        ),
        Accelerator("wnn", "WNN+, published per-parameter baseline (nino_mlp)", "nino_mlp"),
    ]
}


def get_accelerator(name: str) -> Accelerator:
    """The accelerator called ``name``; ``KeyError`` naming the choices when unknown."""
    return lookup(ACCELERATORS, name, "accelerator")
