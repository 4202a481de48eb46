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
    # Shape facts the web tier can check a model against without loading anything: one
    # example's input shape (no batch axis) and the number of classes; None for text sets.
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    # Fetched from the internet by the worker on first use (torchvision), then read from its
    # cache; refused before queueing where the DATASET_DOWNLOADS setting is off.
    download: bool = False


# torchvision data sets offered by name: catalog name, what it is, input shape, classes. Their
# loaders (workers/data/torchvision_sets.py) download them into the worker's cache folder.
TORCHVISION_SETS: list[tuple[str, str, tuple[int, ...], int]] = [
    ("mnist", "MNIST: 60k/10k 28×28 grey digits, 10 classes", (1, 28, 28), 10),
    ("kmnist", "Kuzushiji-MNIST: 60k/10k 28×28 grey characters, 10 classes", (1, 28, 28), 10),
    ("cifar10", "CIFAR-10: 50k/10k 32×32 colour images, 10 classes", (3, 32, 32), 10),
    ("cifar100", "CIFAR-100: 50k/10k 32×32 colour images, 100 classes", (3, 32, 32), 100),
    ("svhn", "SVHN: 73k/26k 32×32 colour house numbers, 10 classes", (3, 32, 32), 10),
]

DATASETS: dict[str, BuiltinDataset] = {
    entry.name: entry
    for entry in [
        BuiltinDataset(
            "fashion_mnist",
            "Fashion-MNIST: 55k/10k 28×28 grey images, 10 classes",
            "workers.data.datasets:fashion_mnist",
            input_shape=(1, 28, 28),
            num_classes=10,
        ),
        BuiltinDataset(
            "mnist1d",
            "MNIST-1D: procedurally generated 40-step sequences, 10 classes",
            "workers.data.datasets:mnist1d",
            input_shape=(40,),
            num_classes=10,
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
        *[
            BuiltinDataset(
                name, f"{label} (torchvision, downloaded on first use)",
                f"workers.data.torchvision_sets:{name}",
                input_shape=shape, num_classes=classes, download=True,
            )  # fmt: skip
            for name, label, shape, classes in TORCHVISION_SETS
        ],
    ]
}


def get_dataset(name: str) -> BuiltinDataset:
    """The built-in data set called ``name``; ``KeyError`` naming the choices when unknown."""
    return lookup(DATASETS, name, "built-in data set")
