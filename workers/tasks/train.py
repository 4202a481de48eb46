"""The ``train`` task: train the job's architecture on its data set, NiNo-accelerated or not."""

from __future__ import annotations

from typing import Any

from workers.errors import ModelError, ProgressFn
from workers.tasks.inputs import builtin_data, local_file, model_builder
from workers.tasks.policy import gpu_task, refuse_oversized


@gpu_task("weightspace.train")
def train(job: Any, progress: ProgressFn) -> tuple[str, dict]:
    """Train the job's architecture on its data set, with NiNo or another accelerator."""
    from safetensors.torch import save as save_safetensors

    from workers.catalog import TrainSpec
    from workers.catalog.estimates import train_bytes_per_param
    from workers.data.uploads import check_model_fits
    from workers.pipelines.inputs import load_weights, uploaded_data, with_weights
    from workers.pipelines.train import run_training

    try:
        spec = TrainSpec.from_parameters(job.parameters)
    except (TypeError, ValueError) as error:
        raise ModelError(str(error)) from None
    architecture = job.architecture
    # Before anything is loaded or built: a model too big for this worker fails with a sentence.
    per_param = train_bytes_per_param(
        optimizer=spec.optimizer, accelerator=spec.accelerator, compare=spec.compare
    )
    refuse_oversized(architecture, "train job", per_param)
    # Character-level windows must be as long as the model's context.
    context = int(architecture.zoo_args.get("context", 128))
    progress(0.01, "Loading the data set")
    if spec.dataset_id:
        from django.conf import settings

        from webapp.datasets.models import Dataset

        dataset = Dataset.objects.get(pk=spec.dataset_id)
        with local_file(dataset.file) as path:
            data = uploaded_data(
                path, dataset.format, name=dataset.name, context=context,
                max_inflated=settings.UPLOAD_MAX_INFLATED,
            )  # fmt: skip
    else:
        data = builtin_data(spec.dataset, context=context)
    progress(0.02, "Building the model")
    build = model_builder(architecture)
    hf_config = architecture.source == "hf_config"
    if job.checkpoint is not None:
        with local_file(job.checkpoint.file) as path:
            state = load_weights(str(path), job.checkpoint.format)
        if hf_config:
            from workers.zoo.hf import with_hf_weights

            build = with_hf_weights(build, state)  # a tied head may be absent from the file
        else:
            build = with_weights(build, state)
    model = build()
    if hf_config and data.info.task == "char-lm":
        from workers.data.text import fit_vocabulary
        from workers.zoo.hf import vocabulary_size

        # Characters when the config's vocabulary holds them, else bytes, else a sentence.
        data = fit_vocabulary(data, vocabulary_size(model))
    check_model_fits(model, data)

    def save_weights(state: dict) -> None:
        from workers.tensors import without_aliases

        job.save_artifact(
            "checkpoint", "model.safetensors", save_safetensors(without_aliases(state)),
            "application/octet-stream",
        )  # fmt: skip

    outcome = run_training(
        build, data, spec,
        metrics=job.record_metrics,
        progress=lambda fraction, message: progress(0.03 + 0.95 * fraction, message),
        save_weights=save_weights,
    )  # fmt: skip
    return outcome.message(), outcome.summary()
