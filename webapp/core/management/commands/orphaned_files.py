"""List (``--delete``: remove) stored files that no row refers to."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand

from webapp.core.cleanup import referenced_names, stored_names

# Folders under the storage root that hold uploads and artifacts (nothing else is touched).
FOLDERS = ("architectures", "checkpoints", "datasets", "artifacts")


class Command(BaseCommand):
    help = "List stored files that no architecture, checkpoint, data set or artifact refers to."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--delete", action="store_true", help="remove them too")

    def handle(self, *args: Any, delete: bool = False, **options: Any) -> None:
        referenced = referenced_names()
        orphans = [
            name
            for folder in FOLDERS
            for name in stored_names(default_storage, folder)
            if name not in referenced
        ]
        for name in orphans:
            if delete:
                default_storage.delete(name)
            self.stdout.write(("removed " if delete else "") + name)
        self.stderr.write(f"{len(orphans)} orphaned file(s){' removed' if delete else ''}.")
