"""The only Django-aware worker code: one thin Celery adapter per job kind.

Each adapter (``inspect``, ``train``, ``predict``) reads the job's inputs from the ORM, calls
its pure-torch entry point in ``workers.pipelines`` and stores what comes back. ``policy``
holds the task decorators (claiming, final status, time limits, acks); ``signals`` fails jobs
whose worker died; ``inputs`` turns stored rows into local files and model builders.

torch is imported inside each task (through the engine), never at module import, so CUDA is
initialised in the pool process that runs the job and never before the pool forks.

The task objects are exported here by kind name (``workers.tasks.train`` is the task, as
``app.conf.imports = ["workers.tasks"]`` registers them); their modules are
``workers.tasks.<kind>``.
"""

from workers.tasks import signals  # noqa: F401 - connects the handlers that fail lost jobs
from workers.tasks.inspect import inspect
from workers.tasks.predict import predict
from workers.tasks.train import train

__all__ = ["inspect", "predict", "train"]
