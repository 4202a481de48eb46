"""NiNo: nowcasting parameters with neuron-interaction networks (pure torch + PyG, no Django).

* :mod:`.model` — the NiNo GNN (:class:`NiNoModel`) and the WNN+ per-parameter MLP
  (:class:`WNNPlusModel`), loading the published checkpoints strictly; both read tensors or a
  PyG ``Data`` (``predict_pyg``, ``forward_pyg``) as ``ParamGraph.to_pyg`` makes it;
* :mod:`.layers` — the NiNo message-passing layers (PyG ``MessagePassing`` modules);
* :mod:`.checkpoints` — finding and safely reading those checkpoints;
* :mod:`.scaling` — per-tensor scaling of the context states and the horizon schedule.
"""

from .checkpoints import (
    CHECKPOINT_DIR_ENV,
    CheckpointError,
    CheckpointNotFoundError,
    checkpoint_dir,
    load_checkpoint,
    resolve_checkpoint,
)
from .model import NiNoConfig, NiNoModel, WNNPlusModel, load_model
from .scaling import (
    TensorScale,
    fit_scales,
    horizon_at,
    horizon_schedule,
    scale_states,
    unscale,
)

__all__ = [
    "CHECKPOINT_DIR_ENV",
    "CheckpointError",
    "CheckpointNotFoundError",
    "NiNoConfig",
    "NiNoModel",
    "TensorScale",
    "WNNPlusModel",
    "checkpoint_dir",
    "fit_scales",
    "horizon_at",
    "horizon_schedule",
    "load_checkpoint",
    "load_model",
    "resolve_checkpoint",
    "scale_states",
    "unscale",
]
