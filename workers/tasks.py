"""Thin Celery task adapters: read the job's inputs from the ORM, call the engine, store output.

torch is imported inside each task (through the engine), never at module import, so CUDA is
initialised in the pool process that runs the job and never before the pool forks.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

import workers.signals  # noqa: F401 - connects the handlers that fail lost jobs
from workers.jobs import ProgressFn, cpu_task, local_file


@cpu_task("weightspace.inspect")
def inspect(job: Any, progress: ProgressFn) -> tuple[str, dict]:
    """Build the job's architecture, count its parameters and store its graph and tensors."""
    from workers.inspect import ModelSpec, inspect_model

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
    progress(0.95, "Saving the graph and the tensor table")
    graph = result["graph"]
    job.save_artifact("graph", "graph.json", json.dumps(graph).encode(), "application/json")
    job.save_artifact(
        "tensors", "tensors.json", json.dumps(result["tensors"]).encode(), "application/json"
    )
    architecture.record_inspection(
        num_params=result["num_params"], input_shape=result["input_shape"], layers=result["layers"]
    )
    summary = {
        "num_params": result["num_params"],
        "num_tensors": result["num_tensors"],
        "input_shape": result["input_shape"],
        "graph_nodes": len(graph.get("nodes", [])),
        "graph_edges": len(graph.get("edges", [])),
        "graph_method": graph.get("method"),
        "unknown_ops": graph.get("unknown_ops", []),
        "device": result.get("device", "cpu"),
    }
    return f"{result['num_params']:,} parameters in {result['num_tensors']} tensors", summary
