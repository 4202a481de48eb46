"""The published NiNo checkpoint and the golden FM/16 file, shared by the NiNo model tests.

Tests that need them are skipped, with the reason, where they are absent.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.engine.nino.published import GOLDEN_PATH, require_checkpoint
from workers.nino import NiNoModel


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    if not GOLDEN_PATH.is_file():
        pytest.skip(f"golden file {GOLDEN_PATH} is absent (set $NINO_GOLDEN_PATH)")
    return torch.load(GOLDEN_PATH, weights_only=True)


@pytest.fixture(scope="module")
def nino() -> NiNoModel:
    require_checkpoint("nino_no_posw")
    return NiNoModel.from_checkpoint("nino_no_posw")
