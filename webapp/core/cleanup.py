"""Files leave storage with their rows: when a row with a file is deleted (directly, or by a
cascade — an architecture takes its jobs and their artifacts with it), its files are deleted
once the transaction commits, so a rolled-back delete keeps them.

``python manage.py orphaned_files`` lists (``--delete`` removes) stored files no row names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.core.files.storage import Storage
from django.db import models, transaction
from django.db.models.signals import post_delete


def file_fields(model: type[models.Model]) -> list[models.FileField]:
    return [f for f in model._meta.get_fields() if isinstance(f, models.FileField)]


def _delete_files(sender: type[models.Model], instance: models.Model, **_: Any) -> None:
    for field in file_fields(sender):
        stored = getattr(instance, field.attname)
        if not stored or not stored.name:
            continue
        name, storage = stored.name, stored.storage

        def remove(name: str = name, storage: Storage = storage, field: Any = field) -> None:
            # Another row may name the same file (content-addressed paths): keep it then.
            if not sender._default_manager.filter(**{field.attname: name}).exists():
                storage.delete(name)

        transaction.on_commit(remove)


def connect() -> None:
    """Connect the handler for every installed model that has a file field."""
    for model in apps.get_models():
        if file_fields(model):
            post_delete.connect(_delete_files, sender=model, dispatch_uid=f"files-{model._meta}")


def referenced_names() -> set[str]:
    """Every storage name a row holds."""
    names: set[str] = set()
    for model in apps.get_models():
        for field in file_fields(model):
            names.update(
                model._default_manager.exclude(**{field.attname: ""})
                .values_list(field.attname, flat=True)
            )
    return names


def stored_names(storage: Storage, folder: str = "") -> Iterator[str]:
    """Every file under ``folder`` of ``storage``, recursively."""
    try:
        folders, files = storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in files:
        yield f"{folder}/{name}" if folder else name
    for sub in folders:
        yield from stored_names(storage, f"{folder}/{sub}" if folder else sub)
