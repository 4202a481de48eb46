"""Graph HyperNetworks (pure torch, no Django): predict a model's parameters from its graph.

* :mod:`.model` — the GHN-3 network (:class:`GHN3`), compatible with the published
  checkpoints' layout, and its config (:class:`GHN3Config`, :func:`infer_config`);
* :mod:`.predict` — :func:`predict_parameters`, which decodes, tiles, normalises and writes
  predicted tensors into a model and reports what it did;
* :mod:`.convert` — reading official (joblib/pickle) GHN files through a restricted
  unpickler and converting them to ``{"state_dict", "config"}`` files that
  ``torch.load(weights_only=True)`` reads (:func:`load_ghn`).

* :mod:`.metatrain` — meta-training our own GHN on Fashion-MNIST (``ghn_ours.pt``).

Typical use::

    ghn = load_ghn("workers/ghn/weights/ghn_ours.pt")   # ours, or a converted official file
    model, report = ghn.predict(model, torch.zeros(1, 1, 28, 28))
"""

from .convert import GHNFileError, RestrictedUnpickler, convert_official, load_official_state_dict
from .model import GHN3, GHN3Config, canonical_state_dict, infer_config, load_ghn
from .predict import (
    PredictionReport,
    decoder_key,
    fit_shape,
    node_shapes,
    normalise,
    predict_parameters,
    predict_tensors,
)

__all__ = [
    "GHN3",
    "GHN3Config",
    "GHNFileError",
    "PredictionReport",
    "RestrictedUnpickler",
    "canonical_state_dict",
    "convert_official",
    "decoder_key",
    "fit_shape",
    "infer_config",
    "load_ghn",
    "load_official_state_dict",
    "node_shapes",
    "normalise",
    "predict_parameters",
    "predict_tensors",
]
