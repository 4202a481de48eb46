"""Data sets for training jobs: built-in sets, text corpora, user uploads, batching.

Import from the modules: ``datasets`` (containers, Fashion-MNIST, MNIST-1D, the deterministic
batch order that makes paired runs identical), ``text`` (character-level corpora) and
``uploads`` (loading uploaded files), ``image_folder`` (uploaded image-folder zips) and
``torchvision_sets`` (sets downloaded by name). :func:`load_builtin` loads a built-in set by its
catalog name. Upload checks that the web tier runs live in ``workers.safety.datasets`` and
``workers.safety.image_folder``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any


def load_builtin(
    name: str, *, context: int = 128, cache_dir: Path | None = None, download: bool = True
) -> Any:
    """The built-in data set ``name`` of :mod:`workers.catalog.datasets`, loaded.

    ``context`` is the window length for character-level sets (ignored by the others).
    ``cache_dir`` and ``download`` are for the sets fetched from the internet (the catalog's
    ``download`` entries): where they are kept, and whether a missing one may be downloaded.
    Raises ``ModelError`` for an unknown name, ``DatasetUnavailable`` for one that cannot be had.
    """
    from workers.catalog.datasets import get_dataset
    from workers.errors import ModelError

    try:
        entry = get_dataset(name)
    except KeyError as error:
        raise ModelError(str(error.args[0])) from None
    module, _, function = entry.loader.partition(":")
    loader = getattr(importlib.import_module(module), function)
    if entry.text:
        return loader(context=context)
    if entry.download:
        return loader(cache_dir=cache_dir, download=download)
    return loader()
