"""Data sets that users upload, the checks they must pass, and the model-fits-data check.

Every problem raises ``workers.errors.ModelError`` with a message meant for the person who
uploaded the file: what is wrong and what shape or value was expected. Messages never name
paths on the worker. All checks run before any training starts.

Uploads are untrusted: ``.npz`` files are opened with ``allow_pickle=False`` and their array
headers are read before the data, so an object array or a huge (or zip-bomb) array is refused
without being loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from workers.data.datasets import ClassificationData, TextData, TrainingData
from workers.data.text import make_text_data
from workers.errors import ModelError
from workers.safety.datasets import (
    MAX_ARRAY_BYTES,
    MAX_INFLATED,
    MAX_TEXT_BYTES,
    MAX_VOCAB,
    MIN_SAMPLES,
    MIN_TEXT_CHARS,
    read_npz,
    read_text,
    validate_dataset,
    validate_text,
)


def _as_inputs(x: np.ndarray) -> torch.Tensor:
    # 8-bit images are the common case; scale them to [0, 1] as image pipelines do. Other
    # numbers are taken as they are: the user owns their normalisation.
    scaled = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled))


def load_npz_dataset(
    path: str | Path,
    *,
    name: str = "upload",
    num_classes: int | None = None,
    min_samples: int = MIN_SAMPLES,
    test_fraction: float = 0.1,
    max_bytes: int = MAX_ARRAY_BYTES,
    max_inflated: int = MAX_INFLATED,
) -> ClassificationData:
    """Load an uploaded classification set from a ``.npz`` with arrays ``x`` and ``y``.

    Optional ``x_test``/``y_test`` give the test split; without them the last
    ``test_fraction`` of a fixed (seed 0) shuffle is held out. Inputs become float32 (uint8
    is scaled to [0, 1]), labels int64. Both splits go through ``validate_dataset``;
    the test split must have the training inputs' shape. Raises ``ModelError`` for anything
    unusable. The file is never unpickled; its compressed members may inflate to
    ``max_inflated`` bytes in all (the web tier's ``UPLOAD_MAX_INFLATED``, so the worker
    accepts what the upload check accepted).
    """
    arrays = read_npz(path, max_bytes, max_inflated)
    x, y = arrays["x"], arrays["y"]
    if "x_test" in arrays:
        x_test, y_test = arrays["x_test"], arrays["y_test"]
        classes = validate_dataset(x, y, num_classes=num_classes, min_samples=min_samples)
    else:
        classes = validate_dataset(x, y, num_classes=num_classes, min_samples=min_samples)
        order = np.random.default_rng(0).permutation(len(y))
        n_test = max(1, int(len(y) * test_fraction))
        x, y, x_test, y_test = (
            x[order[n_test:]],
            y[order[n_test:]],
            x[order[:n_test]],
            y[order[:n_test]],
        )
    if x_test.shape[1:] != x.shape[1:]:
        raise ModelError(
            f"The test inputs have shape {list(x_test.shape[1:])} per sample but the training "
            f"inputs have {list(x.shape[1:])}."
        )
    validate_dataset(x_test, y_test, num_classes=classes, min_samples=1, split="test")
    return ClassificationData(
        name=name,
        x_train=_as_inputs(x),
        y_train=torch.from_numpy(y.astype(np.int64)),
        x_test=_as_inputs(x_test),
        y_test=torch.from_numpy(y_test.astype(np.int64)),
        num_classes=classes,
    )


def load_text_dataset(
    path: str | Path,
    *,
    name: str = "upload",
    context: int = 128,
    val_fraction: float = 0.1,
    min_chars: int = MIN_TEXT_CHARS,
    max_vocab: int = MAX_VOCAB,
    max_bytes: int = MAX_TEXT_BYTES,
) -> TextData:
    """Load an uploaded plain UTF-8 text file as a character-level corpus.

    Refuses files over ``max_bytes``, bytes that are not UTF-8 (a leading byte-order mark is
    allowed), and texts that fail ``validate_text``. See ``make_text_data`` for the split.
    """
    text = read_text(path, max_bytes)
    validate_text(text, min_chars=min_chars, max_vocab=max_vocab, context=context)
    return make_text_data(name, text, context=context, val_fraction=val_fraction)


def check_model_fits(
    model: nn.Module,
    data: TrainingData,
    *,
    input_shape: list[int] | tuple[int, ...] | None = None,
) -> None:
    """Check that ``model`` can train on ``data``; raise ``ModelError`` saying why not.

    ``input_shape`` (without the batch axis), when the model declares one, must equal the data
    set's. Then two examples go through the model (eval mode, no gradients, on the model's
    device): it must accept them, and its output must have ``num_classes`` values per example
    for classification, or [batch, context, >= vocabulary size] logits for char-lm.
    """
    info = data.info
    if input_shape is not None and tuple(input_shape) != tuple(info.input_shape):
        raise ModelError(
            f"The model expects inputs shaped {list(input_shape)} but the data set "
            f"{info.name!r} has inputs shaped {list(info.input_shape)}."
        )
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    example = data.example_batch(2).to(device)
    if info.task == "classification":
        out = _probe(model, example, info.name, info.input_shape)
        if out.shape != (2, info.num_classes):
            raise ModelError(
                f"The model outputs shape {list(out.shape[1:])} per example, but the data set "
                f"{info.name!r} has {info.num_classes} classes: the output must be "
                f"[{info.num_classes}]."
            )
        return
    # Probe a language model with token 0 first: real ids beyond a too-small embedding would
    # fail with an IndexError that does not say the vocabulary is the problem.
    out = _probe(model, torch.zeros_like(example), info.name, info.input_shape)
    if out.ndim != 3 or out.shape[:2] != example.shape or out.shape[2] < info.num_classes:
        raise ModelError(
            f"For character-level training the model must map [batch, {info.input_shape[0]}] "
            f"ids to [batch, {info.input_shape[0]}, vocabulary] logits with a vocabulary of at "
            f"least {info.num_classes}; it returned {list(out.shape)} for 2 windows."
        )
    _probe(model, example, info.name, info.input_shape)


def _probe(
    model: nn.Module, x: torch.Tensor, name: str, input_shape: tuple[int, ...]
) -> torch.Tensor:
    # One forward pass in eval mode without gradients; the model's mode is put back.
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise ModelError(
            f"The model cannot take inputs of the data set {name!r} "
            f"(shaped {list(input_shape)}): {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"The model must return one tensor; it returned {type(out).__name__}.")
    return out


def _first_line(exc: BaseException) -> str:
    # Torch errors can run to many lines; the first says what went wrong.
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
