"""bench/graphs.py keeps the rows it did not run when cases are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.paths import bench_module


def test_naming_a_case_replaces_its_row_and_keeps_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graphs = bench_module("graphs")
    stored = tmp_path / "graphs.json"
    stored.write_text(json.dumps({"results": [{"model": "a", "v": 1}, {"model": "b", "v": 1}]}))
    monkeypatch.setattr(graphs, "RESULTS", stored)

    merged = graphs._merged([{"model": "b", "v": 2}, {"model": "c", "v": 2}])

    assert merged == [{"model": "a", "v": 1}, {"model": "b", "v": 2}, {"model": "c", "v": 2}]


def test_without_stored_results_the_fresh_rows_are_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graphs = bench_module("graphs")
    monkeypatch.setattr(graphs, "RESULTS", tmp_path / "missing.json")

    assert graphs._merged([{"model": "x"}]) == [{"model": "x"}]


def test_the_largest_llama_runs_only_when_named() -> None:
    graphs = bench_module("graphs")

    assert "llama-22L-d2048-1.1B" in graphs.ON_REQUEST
    assert "llama-8L-d2048-0.48B" in graphs.CASES
