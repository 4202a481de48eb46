"""Tests marked ``gpu`` need a CUDA device: without one they are collected and skipped, so the
suite passes on CPU machines; ``bench/gpu_check.sh`` runs them where a GPU is lent."""

from __future__ import annotations

import pytest


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (bench/gpu_check.sh runs these)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
