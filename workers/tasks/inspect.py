"""The ``inspect`` task: build the architecture, count its parameters, store its graphs."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from workers.errors import ProgressFn
from workers.tasks.inputs import local_file
from workers.tasks.policy import cpu_task


@cpu_task("weightspace.inspect")
def inspect(job: Any, progress: ProgressFn) -> tuple[str, dict]:
    """Build the job's architecture, count its parameters and store its graph and tensors."""
    from workers.pipelines.inspect import ModelSpec, inspect_model

    architecture = job.architecture
    progress(0.02, "Preparing the model definition")
    spec = architecture.worker_spec()
    if architecture.file:
        with local_file(architecture.file) as path:
            result = inspect_model(
                ModelSpec(source=spec["source"], path=str(path)),
                progress,
                python_time_limit_s=settings.PYTHON_MODEL_TIME_LIMIT,
                python_memory_mb=settings.PYTHON_MODEL_MEMORY_MB,
            )
    else:
        result = inspect_model(
            ModelSpec(source=spec["source"], name=spec["name"], args=spec["args"]), progress
        )
    progress(0.95, "Saving the graphs and the tensor table")
    for name, document in [
        ("graph.json", result.graph),
        ("arch_graph.json", result.arch_graph),
        ("param_graph.json", result.param_graph),
    ]:
        job.save_artifact("graph", name, json.dumps(document).encode(), "application/json")
    job.save_artifact(
        "tensors", "tensors.json", json.dumps(result.tensors).encode(), "application/json"
    )
    architecture.record_inspection(
        num_params=result.num_params,
        input_shape=result.input_shape,
        layers=result.layers,
        output_shape=result.output_shape,
        input_dtype=result.input_dtype,
        nino=nino_readiness(result.param_graph),
        ghn=ghn_readiness(result.arch_graph),
    )
    return result.message(), result.summary()


def nino_readiness(param_graph: dict[str, Any]) -> dict[str, Any]:
    """What the web tier needs from the parameter-graph summary to judge a NiNo train job:
    ``supported``, ``reason``, and ``nowcast``/``total`` parameter counts with the tensors
    ``left`` out (from the summary's ``coverage`` when it has one; else all or nothing)."""
    readiness: dict[str, Any] = {
        "supported": bool(param_graph.get("supported")),
        "reason": str(param_graph.get("reason", "")),
    }
    coverage = param_graph.get("coverage")
    if isinstance(coverage, dict) and isinstance(coverage.get("total"), int):
        readiness["nowcast"] = int(coverage.get("nowcast") or 0)
        readiness["total"] = coverage["total"]
        readiness["left"] = [
            {"name": str(row.get("name", "")), "reason": str(row.get("reason", ""))}
            for row in (coverage.get("left") or [])[:20]
            if isinstance(row, dict)
        ]
    return readiness


def ghn_readiness(arch_graph: dict[str, Any]) -> dict[str, Any]:
    """Whether a GHN can read the model (its architecture graph was built), and why not."""
    if "error" in arch_graph or "nodes" not in arch_graph:
        return {"supported": False, "reason": str(arch_graph.get("error", "no graph"))}
    return {"supported": True, "reason": ""}
