"""What every role shares: the two exceptions and the progress callback's type.

This module must stay free of torch (and of Django) so that the web tier and the Celery
adapter can import it cheaply.
"""

from collections.abc import Callable

#: ``progress(fraction, message)``: fraction is 0..1 of the whole job. The task adapter's
#: callback raises :class:`Cancelled` once the person asked to stop — the one cancel mechanism.
ProgressFn = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that reports nowhere (library use)."""


class Cancelled(Exception):
    """Raised by a progress callback when the user cancelled the job.

    Engine code lets it propagate (after cleaning up), so the adapter can mark the job as
    cancelled instead of failed.
    """


class ModelError(Exception):
    """A problem with the user's model or input, with a message meant for humans.

    The adapter shows ``str(error)`` to the user as-is, so messages must be short, specific and
    free of internal details such as file system paths of the worker.
    """
