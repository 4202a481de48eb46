"""The ``predict`` job's engine entry point: load a GHN file, predict a model's parameters,
optionally measure them against random initialisation. Pure torch; the Celery adapter
(``workers.tasks.predict``) supplies the model and stores what this returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workers.errors import ModelError, ProgressFn, no_progress
from workers.ghn.evaluate import CALIBRATION_IMAGES, prepare
from workers.ghn.model import GHN3, load_ghn
from workers.tensors import cpu_state_dict
from workers.training.loop import calibrate_batch_norm, evaluate, resolve_device

# Refuse to build graphs for models so large that a prediction would take minutes of CPU.
MAX_PREDICT_PARAMS = 300_000_000


@dataclass
class PredictOutcome:
    """The predicted model (BatchNorm statistics calibrated when it was evaluated), the
    prediction report as JSON, and the job's result summary."""

    model: nn.Module
    report: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The predicted weights on the CPU, ready for ``safetensors``."""
        return cpu_state_dict(self.model)

    def message(self) -> str:
        covered = f"{self.report['n_params_predicted']:,} of {self.report['n_params_total']:,}"
        return f"Predicted {covered} parameters in {self.report['seconds']:.2f} s"


def open_ghn(path: str | Path, device: torch.device | str = "cpu") -> GHN3:
    """A GHN file, loaded for inference; ``ModelError`` when it cannot be read."""
    try:
        return load_ghn(str(path), map_location=device).eval()
    except (ValueError, RuntimeError, OSError) as error:
        raise ModelError(f"The GHN file could not be loaded: {error}") from None


def _check_size(model: nn.Module, max_params: int) -> None:
    count = sum(p.numel() for p in model.parameters())
    if count > max_params:
        raise ModelError(
            f"The model has {count:,} parameters; predictions are limited to {max_params:,} "
            "on this server (GHN_MAX_PARAMS)."
        )


def run_prediction(
    build: Callable[[], nn.Module],
    ghn_path: str | Path,
    *,
    ghn_name: str,
    example: torch.Tensor | None = None,
    evaluate_on: Any = None,
    data_name: str = "",
    max_params: int = MAX_PREDICT_PARAMS,
    progress: ProgressFn = no_progress,
) -> PredictOutcome:
    """Predict the parameters of ``build()`` (seed 0) with the GHN at ``ghn_path``.

    With ``evaluate_on`` (a classification ``TrainingData``) the predicted model and the
    same architecture at its default initialisation get their BatchNorm statistics measured
    on the same 512 training images, then their test accuracy (``accuracy_predicted``,
    ``accuracy_random``). The returned model keeps those statistics, so its checkpoint
    reproduces the accuracy reported.
    """
    from workers.data.uploads import check_model_fits

    device = resolve_device("auto")
    torch.manual_seed(0)
    model = build()
    _check_size(model, max_params)
    ghn = open_ghn(ghn_path, device)
    progress(0.2, f"Predicting its parameters with {ghn_name}")
    predicted = prepare(lambda: model, ghn, example, device=device)
    assert predicted.report is not None
    report = {**predicted.report.to_json(), "seconds": round(predicted.seconds, 3)}
    result: dict[str, Any] = {
        "ghn": ghn_name,
        "predicted_tensors": len(report["predicted"]),
        "not_predicted_tensors": len(report["not_predicted"]),
        "predicted_params": report["n_params_predicted"],
        "total_params": report["n_params_total"],
        "prediction_seconds": report["seconds"],
    }
    if evaluate_on is not None:
        progress(0.6, f"Evaluating on {data_name}")
        check_model_fits(predicted.model, evaluate_on)
        calibration = evaluate_on.example_batch(CALIBRATION_IMAGES).split(128)
        # Predictions come without BatchNorm running statistics: both models get theirs
        # measured on the same training images (no gradient, no parameter change).
        random = prepare(build, None, calibration=calibration, seed=0, device=device)
        calibrate_batch_norm(predicted.model, calibration, device=device)
        for label, candidate in (("predicted", predicted.model), ("random", random.model)):
            metrics = evaluate(candidate, evaluate_on, device=device)
            result[f"accuracy_{label}"] = round(metrics.get("accuracy", float("nan")), 4)
        result["evaluated_on"] = data_name
        result["calibration_images"] = CALIBRATION_IMAGES
    return PredictOutcome(model=predicted.model, report=report, result=result)


__all__ = ["MAX_PREDICT_PARAMS", "PredictOutcome", "open_ghn", "run_prediction"]
