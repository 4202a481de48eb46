"""Thin Celery task adapters: read the job's inputs from the ORM, call the engine, store output.

torch is imported inside each task (through the engine), never at module import, so CUDA is
initialised in the pool process that runs the job and never before the pool forks.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

import workers.signals  # noqa: F401 - connects the handlers that fail lost jobs
from workers.common import ModelError
from workers.jobs import ProgressFn, cpu_task, gpu_task, local_file

# Training images whose statistics a predicted model's BatchNorm layers get before evaluation.
CALIBRATION_IMAGES = 512


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
    progress(0.95, "Saving the graphs and the tensor table")
    graph = result["graph"]
    for name, document in [
        ("graph.json", graph),
        ("arch_graph.json", result["arch_graph"]),
        ("param_graph.json", result["param_graph"]),
    ]:
        job.save_artifact("graph", name, json.dumps(document).encode(), "application/json")
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
        "ghn_graph_nodes": len(result["arch_graph"].get("nodes", [])),
        "parameter_graph": (
            f"{result['param_graph']['nodes']:,} neurons, {result['param_graph']['edges']:,} edges"
            if result["param_graph"].get("supported")
            else "not supported"
        ),
        "device": result.get("device", "cpu"),
    }
    return f"{result['num_params']:,} parameters in {result['num_tensors']} tensors", summary


@gpu_task("weightspace.train")
def train(job: Any, progress: ProgressFn) -> tuple[str, dict]:
    """Train the job's architecture on its data set, with NiNo or another accelerator."""
    from safetensors.torch import save as save_safetensors

    from workers.common import Cancelled
    from workers.data.uploads import check_model_fits
    from workers.training.inputs import (
        builtin_data,
        load_weights,
        uploaded_data,
        with_weights,
    )
    from workers.training.job import Reporter, TrainSpec, run_training

    spec = TrainSpec.from_parameters(job.parameters)
    architecture = job.architecture
    # Character-level windows must be as long as the model's context.
    context = int(architecture.zoo_args.get("context", 128))
    progress(0.01, "Loading the data set")
    if job.parameters.get("dataset_id"):
        from webapp.datasets.models import Dataset

        dataset = Dataset.objects.get(pk=job.parameters["dataset_id"])
        with local_file(dataset.file) as path:
            data = uploaded_data(path, dataset.format, name=dataset.name, context=context)
    else:
        data = builtin_data(job.parameters["dataset"], context=context)
    progress(0.02, "Building the model")
    build = _model_builder(architecture)
    if job.checkpoint is not None:
        with local_file(job.checkpoint.file) as path:
            build = with_weights(build, load_weights(str(path), job.checkpoint.format))
    check_model_fits(build(), data)

    def stop(fraction: float, message: str) -> bool:
        try:
            progress(0.03 + 0.95 * fraction, message)
        except Cancelled:
            return True
        return False

    outcome = run_training(build, data, spec, Reporter(metrics=job.record_metrics, stop=stop))
    job.save_artifact(
        "checkpoint", "model.safetensors", save_safetensors(outcome.state_dict),
        "application/octet-stream",
    )  # fmt: skip
    if outcome.cancelled:
        raise Cancelled()
    result = summarise_training(outcome.runs, data.info.to_dict(), spec.targets)
    first = next(iter(outcome.runs.values()))
    metric = "accuracy" if data.info.task == "classification" else "perplexity"
    final = first["final_metrics"].get(metric)
    return f"Trained {first['steps_done']:,} steps; test {metric} {final:.4g}", result


def _copies_of(model: Any) -> Any:
    import copy

    return lambda: copy.deepcopy(model)


def summarise_training(runs: dict[str, dict], data: dict, targets: list[float]) -> dict:
    """The job's result: per run the final metrics and steps to each target, plus speed-ups."""
    summary: dict[str, Any] = {"dataset": data, "runs": runs}
    plain = runs.get("plain")
    accelerated = next((label for label in runs if label != "plain"), None)
    if plain and accelerated:
        speedups = {}
        for target in targets:
            a = runs[accelerated]["steps_to_target"].get(str(float(target)))
            b = plain["steps_to_target"].get(str(float(target)))
            speedups[str(target)] = round(b / a, 3) if a and b else None
        summary["speedup"] = speedups
    return summary


@gpu_task("weightspace.predict")
def predict(job: Any, progress: ProgressFn) -> tuple[str, dict]:
    """Predict the architecture's parameters with a GHN; store them and what was covered."""
    import torch
    from safetensors.torch import save as save_safetensors

    from webapp.jobs.parameters import ghn_files
    from workers.ghn.run import predict_into
    from workers.training.inputs import builtin_data
    from workers.training.loop import calibrate_batch_norm, evaluate, resolve_device

    parameters = job.parameters
    ghn_path = ghn_files().get(parameters["ghn"])
    if ghn_path is None:
        raise ModelError(f"The GHN {parameters['ghn']!r} is no longer installed.")
    progress(0.05, "Building the model")
    build = _model_builder(job.architecture)
    device = resolve_device("auto")
    torch.manual_seed(0)
    model = build()
    progress(0.2, f"Predicting its parameters with {parameters['ghn']}")
    example = None
    if job.architecture.source == "zoo":
        from workers.zoo.build import example_input

        example = example_input(job.architecture.zoo_name, job.architecture.zoo_args)
    report = predict_into(
        model, ghn_path, example, device=str(device), max_params=settings.GHN_MAX_PARAMS
    )
    result: dict[str, Any] = {
        "ghn": parameters["ghn"],
        "predicted_tensors": len(report["predicted"]),
        "not_predicted_tensors": len(report["not_predicted"]),
        "predicted_params": report["n_params_predicted"],
        "total_params": report["n_params_total"],
        "prediction_seconds": report["seconds"],
    }
    if parameters.get("evaluate_on"):
        from workers.data.uploads import check_model_fits

        progress(0.6, f"Evaluating on {parameters['evaluate_on']}")
        data = builtin_data(parameters["evaluate_on"])
        check_model_fits(model, data)
        torch.manual_seed(0)
        random_model = build().to(device)
        # Predictions come without BatchNorm running statistics: both models get theirs
        # measured on the same training images (no gradient, no parameter change).
        calibration = data.example_batch(CALIBRATION_IMAGES).split(128)
        for label, candidate in (("predicted", model), ("random", random_model)):
            calibrate_batch_norm(candidate, calibration, device=device)
            metrics = evaluate(candidate, data, device=device)
            result[f"accuracy_{label}"] = round(metrics.get("accuracy", float("nan")), 4)
        result["evaluated_on"] = parameters["evaluate_on"]
        result["calibration_images"] = CALIBRATION_IMAGES
    # Saved after the evaluation, so that a BatchNorm model's measured statistics are in the
    # checkpoint and loading it reproduces the accuracy reported.
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    content = save_safetensors(state)
    job.save_artifact("checkpoint", "predicted.safetensors", content, "application/octet-stream")
    job.save_artifact(
        "log", "prediction_report.json", json.dumps(report).encode(), "application/json"
    )
    if parameters.get("then_train"):
        progress(0.9, "Starting training from the prediction")
        result["train_job"] = _train_from_prediction(job, content, parameters["then_train"])
    covered = f"{report['n_params_predicted']:,} of {report['n_params_total']:,} parameters"
    return f"Predicted {covered} in {report['seconds']:.2f} s", result


def _model_builder(architecture: Any) -> Any:
    """A builder for the architecture's network (zoo entry or a checked ``.pt2``)."""
    from workers.training.inputs import model_builder

    if not architecture.file:
        return model_builder("zoo", architecture.zoo_name, architecture.zoo_args)
    with local_file(architecture.file) as path:
        model = model_builder(architecture.source, path=str(path))()
    return _copies_of(model)


def _train_from_prediction(job: Any, content: bytes, parameters: dict) -> int:
    """Store the prediction as a checkpoint of the person's and queue a train job from it."""
    import hashlib

    from django.core.files.base import ContentFile

    from webapp.checkpoints.models import Checkpoint
    from webapp.checkpoints.scan import scan_safetensors
    from webapp.jobs.models import Job

    facts = scan_safetensors(ContentFile(content), len(content))
    sha256 = hashlib.sha256(content).hexdigest()
    checkpoint = Checkpoint.objects.filter(owner=job.owner, sha256=sha256).first()
    if checkpoint is None:
        checkpoint = Checkpoint(
            owner=job.owner,
            name=f"{job.architecture.name} · predicted by {job.parameters['ghn']}",
            format=Checkpoint.Format.SAFETENSORS,
            num_tensors=facts.num_tensors,
            num_elements=facts.num_elements,
            tensors=facts.tensors,
            file_bytes=len(content),
            sha256=sha256,
            architecture=job.architecture,
        )
        checkpoint.file.save(f"checkpoints/{job.owner_id}/{sha256}.safetensors",
                             ContentFile(content), save=True)  # fmt: skip
    train = Job.submit(
        owner=job.owner,
        kind="train",
        architecture=job.architecture,
        checkpoint=checkpoint,
        parameters=parameters,
    )
    return train.pk
