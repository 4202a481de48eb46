"""The Celery application. Configured from Django settings (``CELERY_*``).

The web tier imports this module only to ``send_task`` by name, so it never imports the engine
or torch; the worker imports ``workers.tasks``, which does.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("weightspace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ["workers.tasks"]


def ensure_broker_folders() -> None:
    """The filesystem transport needs its folders to exist before anyone sends or polls."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@app.on_after_configure.connect
def _setup(sender: Celery, **_: object) -> None:
    ensure_broker_folders()
