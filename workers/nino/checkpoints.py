"""Finding and reading the published NiNo checkpoints.

The checkpoints are never part of the repository. They are looked up in a directory given by
the environment variable ``NINO_CHECKPOINT_DIR`` (default: ``../shared/pretrained/nino``
relative to the repository root), either by file path or by one of the published names
(``nino_no_posw``, ``nino_mlp``, ``nino_mlp_h32``, with or without ``.pt``).

Reading is strict: files are opened only with ``torch.load(weights_only=True)`` (no arbitrary
unpickling), must hold exactly a ``state_dict`` and ``model_args``, and a published file whose
bytes differ from the release is refused rather than silently used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from workers.provenance import sha256_file

__all__ = [
    "CHECKPOINT_DIR_ENV",
    "PUBLISHED_CHECKPOINTS",
    "CheckpointError",
    "CheckpointNotFoundError",
    "NiNoCheckpoint",
    "checkpoint_dir",
    "load_checkpoint",
    "resolve_checkpoint",
]

CHECKPOINT_DIR_ENV = "NINO_CHECKPOINT_DIR"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_DEFAULT_DIR = _REPO_ROOT.parent / "shared" / "pretrained" / "nino"

#: sha256 of the published files (from the release's README), keyed by name without ``.pt``.
PUBLISHED_CHECKPOINTS: dict[str, str] = {
    "nino_no_posw": "2e2186e4a0e50193080eb9074648786ef25cd5ac3149a7df790127fe41101620",
    "nino_mlp": "34d9ff3703274fa07615e27937dac8ea07f375ed95b5bde6d39abd8c41c06f52",
    "nino_mlp_h32": "389e4d51e79a72bb9d780812504c98146073cc2a96da38be3b72d8abe0b6fd7d",
}


class CheckpointError(ValueError):
    """A checkpoint file exists but is not a usable NiNo checkpoint."""


class CheckpointNotFoundError(FileNotFoundError):
    """No checkpoint file was found for the given path or name."""


@dataclass(frozen=True)
class NiNoCheckpoint:
    """The contents of a NiNo checkpoint file.

    ``model_args`` are the published constructor overrides (e.g. ``{'gnn': False, 'hid': 32}``);
    everything not listed there takes the published default.
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    model_args: dict[str, Any]


def checkpoint_dir() -> Path:
    """Directory that holds the published checkpoints (``$NINO_CHECKPOINT_DIR`` or the default)."""
    configured = os.environ.get(CHECKPOINT_DIR_ENV, "").strip()
    return Path(configured).expanduser() if configured else _DEFAULT_DIR


def _published_name(path: Path) -> str | None:
    name = path.name.removesuffix(".pt")
    return name if name in PUBLISHED_CHECKPOINTS else None


#: The project's own meta-trained NiNo, committed with its manifest (see ``metatrain``).
OURS_NAME = "nino_ours"
OURS_PATH = Path(__file__).resolve().parent / "weights" / "nino_ours.pt"


def resolve_checkpoint(path_or_name: str | os.PathLike[str]) -> Path:
    """Turn a file path or a checkpoint name into an existing file path.

    An existing path wins; ``"nino_ours"`` is our committed model; otherwise the name (with
    ``.pt`` added when missing) is looked up in :func:`checkpoint_dir`. Raises
    :class:`CheckpointNotFoundError` naming both places.
    """
    given = Path(path_or_name).expanduser()
    if given.is_file():
        return given
    if str(path_or_name) == OURS_NAME and OURS_PATH.is_file():
        return OURS_PATH
    directory = checkpoint_dir()
    candidate = directory / (given.name if given.suffix == ".pt" else f"{given.name}.pt")
    if candidate.is_file():
        return candidate
    raise CheckpointNotFoundError(
        f"NiNo checkpoint {str(path_or_name)!r} not found: it is neither a file nor present in "
        f"{directory} (set ${CHECKPOINT_DIR_ENV} to the directory holding "
        f"{', '.join(f'{n}.pt' for n in PUBLISHED_CHECKPOINTS)})."
    )


def load_checkpoint(
    path_or_name: str | os.PathLike[str], *, verify_published: bool = True
) -> NiNoCheckpoint:
    """Read a NiNo checkpoint safely and check its layout.

    With ``verify_published`` (the default) a file named like a published checkpoint must have
    the published sha256, so a truncated or swapped download fails here with a clear message
    instead of as a confusing shape error later.
    """
    path = resolve_checkpoint(path_or_name)
    published = _published_name(path)
    if verify_published and published is not None:
        actual = sha256_file(path)
        if actual != PUBLISHED_CHECKPOINTS[published]:
            raise CheckpointError(
                f"{path} is named like the published {published!r} checkpoint but its sha256 is "
                f"{actual}, not {PUBLISHED_CHECKPOINTS[published]}; re-download it."
            )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for refused or corrupt pickles
        raise CheckpointError(f"{path} cannot be read as a weights-only torch file: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) != {"state_dict", "model_args"}:
        keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(
            f"{path} is not a NiNo checkpoint: expected exactly the keys 'state_dict' and "
            f"'model_args', found {keys}."
        )
    state_dict, model_args = raw["state_dict"], raw["model_args"]
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise CheckpointError(f"{path}: 'state_dict' must map parameter names to tensors.")
    if not isinstance(model_args, dict) or not all(isinstance(k, str) for k in model_args):
        raise CheckpointError(f"{path}: 'model_args' must be a dict keyed by argument names.")
    return NiNoCheckpoint(path=path, state_dict=dict(state_dict), model_args=dict(model_args))
