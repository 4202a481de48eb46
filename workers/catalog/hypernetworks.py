"""Which Graph HyperNetworks a predict job can use, by name.

The web tier lists them (form, API, validation) and the worker opens the same file, so both
call :func:`hypernetwork_files` with the same two settings (``GHN_OURS_PATH`` and
``GHN_CHECKPOINT_DIR``).
"""

from __future__ import annotations

from pathlib import Path

OURS = "ours"
OURS_DESCRIPTION = (
    "Weightspace's own GHN-3, meta-trained on Fashion-MNIST (28 x 28 grey images, 10 classes) "
    "with DeepNets-style architectures"
)


def hypernetwork_files(ours_path: str | Path | None, folder: str | Path) -> dict[str, Path]:
    """The usable GHN files by name: ``ours`` (the project's own, when its file is there)
    first, then the converted files in ``folder`` by file name (an installed ``ours.pt``
    takes the name's place)."""
    files: dict[str, Path] = {}
    if ours_path and Path(ours_path).is_file():
        files[OURS] = Path(ours_path)
    directory = Path(folder)
    if directory.is_dir():
        files.update((p.stem, p) for p in sorted(directory.glob("*.pt")))
    return files


def describe(name: str, path: Path) -> str:
    """One line about a GHN, for the API and the predict form."""
    return OURS_DESCRIPTION if name == OURS else f"installed file {path.name}"
