"""A job's stored inputs, made usable by the engine: local files and model builders."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def local_file(field: Any) -> Iterator[Path]:
    """A local path for a stored file: the file itself on disk storage, else a temporary copy."""
    try:
        yield Path(field.path)
        return
    except NotImplementedError:
        pass  # remote storage (S3 and the like): copy it down
    suffix = Path(field.name).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle, field.open("rb") as source:
        os.chmod(handle.name, 0o644)  # the sandbox reads it as another uid, as a stored file
        shutil.copyfileobj(source, handle, 1 << 20)
        handle.flush()
        yield Path(handle.name)


def model_builder(architecture: Any) -> Callable[[], Any]:
    """A builder for an architecture row's network (zoo entry, a checked ``.pt2``, or a
    Hugging Face config).

    An uploaded archive is loaded once, while its file is at hand; the builder hands out
    copies, so every run starts from the same module.
    """
    from workers.pipelines.inputs import model_builder as engine_builder

    if not architecture.file:
        return engine_builder("zoo", architecture.zoo_name, architecture.zoo_args)
    if architecture.source == "hf_config":
        # The config is read while the file is at hand; each call builds a fresh model.
        with local_file(architecture.file) as path:
            return engine_builder("hf_config", path=str(path))
    with local_file(architecture.file) as path:
        model = engine_builder(architecture.source, path=str(path))()
    return lambda: copy.deepcopy(model)


def example_input(architecture: Any) -> Any:
    """The zoo's example input batch for a zoo architecture, else None (a ``.pt2`` carries its
    own, which the graph builder finds)."""
    if architecture.source != "zoo":
        return None
    from workers.zoo.build import example_input as zoo_example

    return zoo_example(architecture.zoo_name, architecture.zoo_args)


def builtin_data(name: str, *, context: int = 128) -> Any:
    """The built-in data set ``name``, with the deployment's download settings: sets fetched
    from the internet are kept in ``DATASET_CACHE_DIR`` and downloaded only where
    ``DATASET_DOWNLOADS`` is on."""
    from django.conf import settings

    from workers.data import load_builtin

    return load_builtin(
        name,
        context=context,
        cache_dir=Path(settings.DATASET_CACHE_DIR),
        download=settings.DATASET_DOWNLOADS,
    )
