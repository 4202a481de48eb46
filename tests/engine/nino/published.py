"""Where the published NiNo checkpoints and the golden FM/16 file are, for the NiNo tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.paths import GOLDEN
from workers.nino import CHECKPOINT_DIR_ENV, checkpoint_dir

GOLDEN_PATH = Path(os.environ.get("NINO_GOLDEN_PATH", GOLDEN / "golden_nino_fm16.pt"))


def require_checkpoint(name: str) -> Path:
    """The published checkpoint ``name``'s path; skips the test when it is absent."""
    path = checkpoint_dir() / f"{name}.pt"
    if not path.is_file():
        pytest.skip(f"published checkpoint {path} is absent (set ${CHECKPOINT_DIR_ENV})")
    return path
