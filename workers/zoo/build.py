"""Build catalog models and example inputs for them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_parameter_registration_hook,
)

from workers.catalog.models import get_entry, input_shape, validate_args
from workers.zoo.builtin import build_builtin

# Builder arguments set on the user's behalf. GoogLeNet and Inception v3 warn unless
# init_weights is explicit; True is their current default, so the models do not change.
_HIDDEN_BUILDER_ARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"init_weights": True},
    "inception_v3": {"init_weights": True},
}


def build_model(
    name: str, args: dict[str, Any] | None = None, *, device: str | torch.device = "cpu"
) -> nn.Module:
    """Build catalog model ``name`` with ``args`` on ``device``, in eval mode.

    Arguments are validated (ValueError with a human message on bad input) and merged over the
    catalog defaults. Torchvision models are always randomly initialised (``weights=None``);
    nothing is ever downloaded. On ``device="meta"`` no memory is allocated, which is enough
    to count parameters and trace the architecture.
    """
    full_args = validate_args(name, args)
    entry = get_entry(name)
    assert entry is not None  # validate_args raised otherwise

    def construct() -> nn.Module:
        if entry["family"] == "torchvision":
            builder = torchvision.models.get_model_builder(name)
            hidden = _HIDDEN_BUILDER_ARGS.get(name, {})
            return builder(weights=None, **hidden, **full_args)
        return build_builtin(name, full_args)

    if torch.device(device).type == "meta":
        return construct_on_meta(construct).eval()
    # Building under a device context allocates parameters directly on the target device
    # instead of initialising on CPU and copying.
    with torch.device(device):
        return construct().eval()


def construct_on_meta(construct: Callable[[], nn.Module]) -> nn.Module:
    """Call ``construct`` so that all parameters and buffers of the result live on meta.

    The fast path runs it under the meta device context. Some builders compute their layout
    with real tensors (torchvision's RegNet calls ``.tolist()``), which meta tensors cannot
    do; for those, tensors are created normally and each parameter/buffer is moved to meta as
    soon as it is registered, so at most one real tensor is alive at a time.
    """
    try:
        with torch.device("meta"):
            return construct()
    except (NotImplementedError, RuntimeError):
        pass

    def param_to_meta(module: nn.Module, name: str, param: Any) -> Any:
        if param is None:
            return None
        return nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    def buffer_to_meta(module: nn.Module, name: str, buffer: Any) -> Any:
        return None if buffer is None else buffer.to("meta")

    # The registration hooks are process-global; they are removed before returning.
    handles = [
        register_module_parameter_registration_hook(param_to_meta),
        register_module_buffer_registration_hook(buffer_to_meta),
    ]
    try:
        return construct()
    finally:
        for handle in handles:
            handle.remove()


def example_input(
    name: str,
    args: dict[str, Any] | None = None,
    batch: int = 2,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """A random input batch for model ``name`` built with ``args``.

    Images get standard-normal floats; the transformer gets token ids in ``[0, vocab_size)``.
    """
    shape = [batch, *input_shape(name, args)]
    entry = get_entry(name)
    assert entry is not None  # input_shape raised otherwise
    if entry["input_dtype"] == "int64":
        vocab = validate_args(name, args)["vocab_size"]
        if torch.device(device).type == "meta":
            return torch.empty(shape, dtype=torch.long, device=device)
        return torch.randint(0, vocab, shape, device=device)
    return torch.randn(shape, device=device)
