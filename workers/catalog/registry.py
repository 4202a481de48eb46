"""Looking a name up in one of the catalog's registries, with the choices named on a miss."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def lookup(registry: dict[str, T], name: str, what: str) -> T:
    """``registry[name]``; ``KeyError`` with a sentence naming the choices when unknown."""
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"Unknown {what} {name!r}; choose one of {', '.join(registry)}.") from None
