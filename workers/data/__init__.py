"""Data sets for training jobs: built-in sets, text corpora, user uploads, batching.

Import from the modules: ``datasets`` (containers, Fashion-MNIST, MNIST-1D, the deterministic
batch order that makes paired runs identical), ``text`` (character-level corpora) and
``uploads`` (loading uploaded files). :func:`load_builtin` loads a built-in set by its catalog
name. Upload checks that the web tier runs live in ``workers.safety.datasets``.
"""

from __future__ import annotations

import importlib
from typing import Any


def load_builtin(name: str, *, context: int = 128) -> Any:
    """The built-in data set ``name`` of :mod:`workers.catalog.datasets`, loaded.

    ``context`` is the window length for character-level sets (ignored by the others).
    Raises ``ModelError`` for an unknown name.
    """
    from workers.catalog.datasets import get_dataset
    from workers.errors import ModelError

    try:
        entry = get_dataset(name)
    except KeyError as error:
        raise ModelError(str(error.args[0])) from None
    module, _, function = entry.loader.partition(":")
    loader = getattr(importlib.import_module(module), function)
    return loader(context=context) if entry.text else loader()
