"""The ``predict`` task: a GHN predicts the architecture's parameters; store them and what was
covered. "Then train" is not started here: the job's kind queues it once this one succeeded
(``webapp.jobs.kinds.predict``)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from workers.errors import ModelError, ProgressFn
from workers.tasks.inputs import builtin_data, example_input, model_builder
from workers.tasks.policy import gpu_task, refuse_oversized


@gpu_task("weightspace.predict")
def predict(job: Any, progress: ProgressFn) -> tuple[str, dict]:
    """Predict the architecture's parameters with a GHN; store them and what was covered."""
    from safetensors.torch import save as save_safetensors

    from workers.catalog.estimates import PREDICT_BYTES_PER_PARAM
    from workers.catalog.hypernetworks import hypernetwork_files
    from workers.pipelines.predict import run_prediction

    parameters = job.parameters
    files = hypernetwork_files(settings.GHN_OURS_PATH, settings.GHN_CHECKPOINT_DIR)
    ghn_path = files.get(parameters["ghn"])
    if ghn_path is None:
        raise ModelError(f"The GHN {parameters['ghn']!r} is no longer installed.")
    refuse_oversized(job.architecture, "predict job", PREDICT_BYTES_PER_PARAM)
    progress(0.05, "Building the model")
    evaluate_on = parameters.get("evaluate_on") or ""
    outcome = run_prediction(
        model_builder(job.architecture),
        ghn_path,
        ghn_name=parameters["ghn"],
        example=example_input(job.architecture),
        evaluate_on=builtin_data(evaluate_on) if evaluate_on else None,
        data_name=evaluate_on,
        max_params=settings.GHN_MAX_PARAMS,
        progress=progress,
    )
    # Saved after the evaluation, so that a BatchNorm model's measured statistics are in the
    # checkpoint and loading it reproduces the accuracy reported.
    job.save_artifact(
        "checkpoint", "predicted.safetensors", save_safetensors(outcome.state_dict()),
        "application/octet-stream",
    )  # fmt: skip
    job.save_artifact(
        "log", "prediction_report.json", json.dumps(outcome.report).encode(), "application/json"
    )
    return outcome.message(), outcome.result
