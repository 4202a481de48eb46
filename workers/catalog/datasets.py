"""Built-in data sets: the name a person picks, what it is, and the function that loads it.

A new data set is one entry here; ``loader`` names its loading function as ``module:function``
(imported only on a worker, so this module stays torch-free). The function takes the keyword
``context`` (the window length of a character-level model) when ``text`` is true.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.catalog.registry import lookup


@dataclass(frozen=True)
class BuiltinDataset:
    """One built-in data set."""

    name: str
    description: str
    loader: str  # "module:function" of the engine function that returns a TrainingData
    text: bool = False  # character-level (needs a transformer), else classification


DATASETS: dict[str, BuiltinDataset] = {
    entry.name: entry
    for entry in [
        BuiltinDataset(
            "fashion_mnist",
            "Fashion-MNIST: 55k/10k 28×28 grey images, 10 classes",
            "workers.data.datasets:fashion_mnist",
        ),
        BuiltinDataset(
            "mnist1d",
            "MNIST-1D: procedurally generated 40-step sequences, 10 classes",
            "workers.data.datasets:mnist1d",
        ),
        BuiltinDataset(
            "shakespeare",
            "Shakespeare's plays, character-level (needs a transformer model)",
            "workers.data.text:shakespeare_corpus",
            text=True,
        ),
        BuiltinDataset(
            "pydoc",
            "Python's documentation topics, character-level (small; for smoke tests)",
            "workers.data.text:pydoc_corpus",
            text=True,
        ),
    ]
}


def get_dataset(name: str) -> BuiltinDataset:
    """The built-in data set called ``name``; ``KeyError`` naming the choices when unknown."""
    return lookup(DATASETS, name, "built-in data set")
