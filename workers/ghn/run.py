"""One prediction, as the predict job needs it: load a GHN file, predict a model's parameters,
time it. Pure torch; the Celery adapter supplies the model and stores the results."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workers.common import ModelError
from workers.ghn.model import load_ghn
from workers.ghn.predict import predict_parameters

# Refuse to build graphs for models so large that a prediction would take minutes of CPU.
MAX_PREDICT_PARAMS = 300_000_000


def predict_into(
    model: nn.Module,
    ghn_path: str | Path,
    example: torch.Tensor | None = None,
    *,
    device: str = "cpu",
    max_params: int = MAX_PREDICT_PARAMS,
) -> dict[str, Any]:
    """Write the GHN's prediction into ``model``; return the report with the time it took.

    ``example`` is an input batch for tracing the architecture graph (default: the graph
    builder's ImageNet-sized image, or the input stored in a ``.pt2``). Models above
    ``max_params`` parameters are refused with a ``ModelError`` before any work.
    """
    from workers.graphs.arch_graph import architecture_graph

    count = sum(p.numel() for p in model.parameters())
    if count > max_params:
        raise ModelError(
            f"The model has {count:,} parameters; predictions are limited to {max_params:,} "
            "on this server (GHN_MAX_PARAMS)."
        )
    try:
        ghn = load_ghn(str(ghn_path), map_location=device).eval()
    except (ValueError, RuntimeError, OSError) as error:
        raise ModelError(f"The GHN file could not be loaded: {error}") from None
    model.to(device)
    start = time.perf_counter()
    graph = architecture_graph(model, None if example is None else example.to(device))
    with torch.no_grad():
        report = predict_parameters(ghn, model, graph)
    return {**report.to_json(), "seconds": round(time.perf_counter() - start, 3)}
