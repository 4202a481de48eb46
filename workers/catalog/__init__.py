"""The single owner of the names both tiers share — torch-free and Django-free.

The web tier validates a request against these entries before anything is queued; the worker
resolves the same names to real objects. Adding a model family, a data set, an accelerator or
a hypernetwork is one entry here (plus, for a data set, the loader function it names):

* :mod:`.models` — buildable architectures (torchvision and built-in families), their
  arguments and default input shapes, generated into ``models.json``;
* :mod:`.datasets` — built-in data sets and the loader each one names;
* :mod:`.accelerators` — optimizer accelerators and the meta-model checkpoint each loads;
* :mod:`.hypernetworks` — which GHN files a predict job can use;
* :mod:`.training` — optimizers, devices and the train job's defaults (:class:`TrainSpec`).

Nothing here imports torch; a test keeps it that way.
"""

from workers.catalog.accelerators import ACCELERATORS, Accelerator, get_accelerator
from workers.catalog.datasets import DATASETS, BuiltinDataset, get_dataset
from workers.catalog.training import DEVICES, OPTIMIZERS, TrainSpec

__all__ = [
    "ACCELERATORS",
    "DATASETS",
    "DEVICES",
    "OPTIMIZERS",
    "Accelerator",
    "BuiltinDataset",
    "TrainSpec",
    "get_accelerator",
    "get_dataset",
]
