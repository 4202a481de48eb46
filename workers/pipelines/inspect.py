"""Engine entry point for "inspect a model": parameters, layers and the module graph.

The Celery adapter calls ``inspect_model``. Catalog ("zoo") models are trusted code and are
inspected in this process, on the meta device when possible (no memory, no compute).
User-supplied files are not: Python sources and ``torch.export`` archives are handled by
``workers.sandbox.child`` in a child process with CPU, memory and wall-clock limits, a temporary
working directory and a scrubbed environment (archives are also checked statically first by
``workers.safety.pt2``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.errors import Cancelled, ModelError, ProgressFn, no_progress


@dataclass
class ModelSpec:
    """What to inspect.

    ``source`` is "zoo" (catalog model ``name`` with ``args``), "export" (a ``.pt2`` file
    written by ``torch.export.save`` at ``path``) or "python" (a ``.py`` file at ``path``
    defining ``build_model()`` and ``INPUT_SHAPE``). ``input_shape`` (without the batch
    dimension) overrides the model's default example input for "zoo" and "python".
    """

    source: str
    name: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    input_shape: list[int] | None = None


SMALL_MODEL_PARAMS = 200_000


@dataclass
class InspectionResult:
    """What an inspection learnt about a model; JSON-able through :meth:`to_json`.

    ``tensors`` are ``parameter_table``'s rows, ``layers`` the leaf-layer counts, ``graph``
    the module graph document, ``arch_graph`` the GHN architecture graph document (or
    ``{"error": ...}``), ``param_graph`` the NiNo parameter-graph summary (``supported``
    false with a reason when it cannot be built), ``device`` "cuda" when real tensors were
    placed on a GPU, else "cpu" (meta-only inspections report "cpu").
    """

    num_params: int
    num_tensors: int
    tensors: list[dict[str, Any]]
    layers: dict[str, int]
    input_shape: list[Any]
    graph: dict[str, Any]
    arch_graph: dict[str, Any]
    param_graph: dict[str, Any]
    device: str = "cpu"
    # One example's output shape (no batch axis: [classes] for a classifier, [context,
    # vocabulary] for a language model) and the input's dtype; the web tier checks data sets
    # against them before a job is queued. None: the model's output is not one tensor.
    output_shape: list[int] | None = None
    input_dtype: str = "float32"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: Any) -> InspectionResult:
        """Read a result written by the sandbox, checking its structure first: the child ran
        user code, which could have tampered with what it wrote."""
        expected = {
            "num_params": int, "num_tensors": int, "tensors": list, "layers": dict,
            "input_shape": list, "graph": dict, "arch_graph": dict, "param_graph": dict,
            "device": str,
        }  # fmt: skip
        if not isinstance(document, dict) or any(
            not isinstance(document.get(key), kind) for key, kind in expected.items()
        ):
            raise ModelError("The sandbox returned a malformed result.")
        if not isinstance(document["graph"].get("nodes"), list):
            raise ModelError("The sandbox returned a malformed graph.")
        output_shape = document.get("output_shape")
        if output_shape is not None and (
            not isinstance(output_shape, list)
            or any(isinstance(d, bool) or not isinstance(d, int) for d in output_shape)
        ):
            output_shape = None  # not trusted, and only used for advice before queueing
        input_dtype = document.get("input_dtype")
        return cls(
            **{key: document[key] for key in expected},
            output_shape=output_shape,
            input_dtype=input_dtype if input_dtype in ("float32", "int64") else "float32",
        )

    def summary(self) -> dict[str, Any]:
        """The short result an inspect job stores (the full documents go to artifacts)."""
        params = self.param_graph
        return {
            "num_params": self.num_params,
            "num_tensors": self.num_tensors,
            "input_shape": self.input_shape,
            "graph_nodes": len(self.graph.get("nodes", [])),
            "graph_edges": len(self.graph.get("edges", [])),
            "graph_method": self.graph.get("method"),
            "unknown_ops": self.graph.get("unknown_ops", []),
            "ghn_graph_nodes": len(self.arch_graph.get("nodes", [])),
            "parameter_graph": (
                f"{params['nodes']:,} neurons, {params['edges']:,} edges"
                if params.get("supported")
                else "not supported"
            ),
            "device": self.device,
            "output_shape": self.output_shape,
            "input_dtype": self.input_dtype,
        }

    def message(self) -> str:
        return f"{self.num_params:,} parameters in {self.num_tensors} tensors"


def inspect_model(
    spec: ModelSpec,
    progress: ProgressFn = no_progress,
    *,
    python_time_limit_s: int = 60,
    python_memory_mb: int = 4096,
) -> dict[str, Any]:
    """Inspect a model and return an :class:`InspectionResult`.

    ``progress(fraction, message)`` is called at each stage and about every two seconds while
    a sandbox runs; it may raise ``Cancelled``, which stops the work (killing the sandbox) and
    propagates. Bad input of any kind raises ``ModelError`` with a message for humans. The
    limits apply to the sandbox used for "python" and "export" sources.
    """
    if spec.source == "zoo":
        return _inspect_zoo(spec, progress)
    if spec.source not in ("python", "export", "hf_config"):
        raise ModelError(f"Unknown model source {spec.source!r}.")
    if not spec.path or not os.path.isfile(spec.path):
        raise ModelError("The uploaded model file is missing.")
    if spec.source == "hf_config":
        return _inspect_hf_config(spec.path, progress)
    progress(0.05, "checking the file")
    if spec.source == "export":
        from workers.safety.pt2 import check_pt2

        check_pt2(spec.path)
    from workers.sandbox import run_sandbox

    check_input_shape(spec.input_shape)
    result = run_sandbox(
        spec.source,
        spec.path,
        progress,
        input_shape=spec.input_shape,
        time_limit_s=python_time_limit_s,
        memory_mb=python_memory_mb,
    )
    progress(1.0, "done")
    return InspectionResult.from_json(result)


# ----------------------------------------------------------------------------- zoo


def _inspect_zoo(spec: ModelSpec, progress: ProgressFn) -> dict[str, Any]:
    import torch

    from workers.catalog.models import get_entry, input_shape, validate_args
    from workers.zoo.build import build_model

    try:
        validate_args(spec.name, spec.args)
        shape = check_input_shape(spec.input_shape) or input_shape(spec.name, spec.args)
    except ValueError as exc:
        raise ModelError(str(exc)) from exc
    entry = get_entry(spec.name)
    assert entry is not None  # validate_args raised otherwise
    dtype = torch.long if entry["input_dtype"] == "int64" else torch.float32

    progress(0.1, "building model")
    # Small models are built for real, so the parameter graph can list edges with their
    # (freshly initialised) weights; big ones on the meta device, which costs no memory.
    first = "cpu" if entry["num_params"] <= SMALL_MODEL_PARAMS else "meta"
    model = build_model(spec.name, spec.args, device=first)
    example = _example((2, *shape), dtype, first)
    try:
        return inspect_module(model, example, progress)
    except Cancelled:
        raise
    except Exception:  # noqa: BLE001 - meta tensors cannot run every model; retry for real
        pass
    device = "cuda" if torch.cuda.is_available() else "cpu"
    progress(0.7, f"building model on {device}")

    def later(fraction: float, message: str) -> None:
        # The meta attempt may have reported up to 0.7 already; never go backwards.
        progress(max(fraction, 0.7), message)

    model = build_model(spec.name, spec.args, device=device)
    example = _example((2, *shape), dtype, device)
    try:
        return inspect_module(model, example, later)
    except Cancelled:
        raise
    except Exception as exc:
        raise ModelError(f"The model could not be traced: {_last_line(exc)}") from exc


def _inspect_hf_config(path: str, progress: ProgressFn) -> InspectionResult:
    """A Hugging Face config's causal LM, inspected in this process: the config is data (checked
    like on upload) and the classes are transformers' own, so no sandbox is needed. Built on
    the meta device first (no memory), for real when a tracer needs values."""
    import torch

    from workers.zoo.hf import build_hf_model, context_length, load_config

    progress(0.1, "building the model from its config")
    config = load_config(path)
    window = min(16, context_length(config))
    for device in ("meta", "cpu"):
        model = build_hf_model(config, device=device)
        example = torch.zeros((2, window), dtype=torch.long, device=device)
        try:
            return inspect_module(model, example, progress)
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - meta tensors cannot run everything
            failure = exc
    raise ModelError(f"The model could not be traced: {_last_line(failure)}")


def check_input_shape(shape: Any) -> list[int] | None:
    if shape is None:
        return None
    if (
        not isinstance(shape, list | tuple)
        or not 1 <= len(shape) <= 8
        or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 65_536 for d in shape)
    ):
        raise ModelError(
            "The input shape must be a list of 1 to 8 positive integers (without batch)."
        )
    return list(shape)


def _example(shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
    import torch

    if dtype == torch.long:
        # Token id 0 is valid for every vocabulary size.
        return torch.zeros(shape, dtype=dtype, device=device)
    return torch.randn(shape, dtype=dtype, device=device)


def inspect_module(
    model: Any, example: Any, progress: ProgressFn = no_progress
) -> InspectionResult:
    """Inspection result for an ``nn.Module`` and an example input batch (batch dim first).

    Shared by the zoo path and the sandbox; exceptions from tracing propagate.
    """
    import torch

    from workers.graphs.module.graph import layer_summary, module_graph, parameter_table

    progress(0.5, "counting parameters")
    tensors = parameter_table(model)
    progress(0.6, "tracing graph")
    graph = module_graph(model, example)
    progress(0.75, "building the architecture and parameter graphs")
    graphs = neural_graphs(model, example)
    progress(1.0, "done")
    on_gpu = any(p.is_cuda for p in model.parameters()) or (
        isinstance(example, torch.Tensor) and example.is_cuda
    )
    output = output_shape(model, (example,))
    return InspectionResult(
        num_params=sum(row["numel"] for row in tensors),
        num_tensors=len(tensors),
        tensors=tensors,
        layers=layer_summary(model),
        input_shape=list(example.shape[1:]),
        graph=graph,
        **graphs,
        device="cuda" if on_gpu else "cpu",
        output_shape=output,
        input_dtype=_dtype_name(example),
    )


def output_shape(model: Any, args: tuple, kwargs: dict | None = None) -> list[int] | None:
    """One example's output shape (batch axis dropped) from a forward pass without gradients
    (free on the meta device); None when the output is not one tensor (or logits) or the
    pass fails. The model's train/eval mode is put back."""
    import torch

    was_training = _set_training(model, False)
    try:
        with torch.no_grad():
            out = model(*args, **(kwargs or {}))
    except Exception:  # noqa: BLE001 - advice only: the graphs were traced already
        return None
    finally:
        _set_training(model, was_training)
    out = getattr(out, "logits", out)  # Hugging Face models return an output object
    if isinstance(out, tuple | list) and len(out) == 1:
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim < 1:
        return None
    return [int(d) for d in out.shape[1:]]


def _set_training(model: Any, mode: bool) -> bool:
    # Exported programs' modules refuse train()/eval(); they run as exported.
    was = bool(getattr(model, "training", False))
    try:
        model.train(mode)
    except Exception:  # noqa: BLE001 - see above
        pass
    return was


def _dtype_name(example: Any) -> str:
    import torch

    if isinstance(example, torch.Tensor) and example.dtype == torch.long:
        return "int64"
    return "float32"


def neural_graphs(model: Any, example: Any = None) -> dict[str, Any]:
    """The GHN architecture graph and the NiNo parameter-graph summary, as JSON documents.

    Either may be impossible for a given model; then its document says why (``error`` or
    ``supported: false``) instead of failing the inspection.
    """
    from workers.graphs.arch.graph import architecture_graph
    from workers.graphs.params.summary import param_graph_summary

    try:
        arch = architecture_graph(model, example).to_json()
    except Exception as exc:  # noqa: BLE001 - reported on the page, the inspection goes on
        arch = {"error": f"The architecture graph could not be built: {_last_line(exc)}"}
    import torch

    # The traced parameter graph reads the data flow on the same batch (an exported program
    # accepts only the shapes it was exported with).
    batch = example if isinstance(example, torch.Tensor) else None
    return {"arch_graph": arch, "param_graph": param_graph_summary(model, example=batch)}


def inspect_exported(path: str) -> InspectionResult:
    """Inspection result for a ``.pt2`` archive (run this in the sandbox, never in a worker).

    Parameters are the lifted parameters of the program (buffers excluded), which matches
    ``sum(p.numel() for p in model.parameters())`` of the exported model. The input shape is
    the first example input without its first (batch) dimension.
    """
    import torch

    from workers.graphs.module.graph import graph_from_exported, layers_from_graph

    ep = torch.export.load(path)
    state = ep.state_dict
    tensors = []
    for name in ep.graph_signature.parameters:
        p = state[name]
        tensors.append(
            {
                "name": name,
                "shape": list(p.shape),
                "dtype": str(p.dtype).removeprefix("torch."),
                "numel": p.numel(),
            }
        )
    graph = graph_from_exported(ep)
    example_args, example_kwargs = ep.example_inputs or ((), {})
    first = next(
        (v for v in (*example_args, *example_kwargs.values()) if isinstance(v, torch.Tensor)),
        None,
    )
    output = output_shape(ep.module(), example_args, example_kwargs) if first is not None else None
    return InspectionResult(
        num_params=sum(row["numel"] for row in tensors),
        num_tensors=len(tensors),
        tensors=tensors,
        layers=layers_from_graph(graph),
        input_shape=_exported_input_shape(ep, graph),
        graph=graph,
        **neural_graphs(ep.module(), first),
        device="cpu",
        output_shape=output,
        input_dtype=_dtype_name(first),
    )


def _exported_input_shape(ep: Any, graph: dict[str, Any]) -> list[int | str]:
    import torch

    if ep.example_inputs is not None:
        args, kwargs = ep.example_inputs
        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.Tensor):
                return list(value.shape[1:])
    # No stored example: fall back to the (possibly symbolic) placeholder shape.
    for node in graph["nodes"]:
        if node["op"] == "input" and node["out_shape"] is not None:
            return node["out_shape"][1:]
    return []


def _last_line(exc: BaseException) -> str:
    import traceback

    return traceback.format_exception_only(exc)[-1].strip()


__all__ = [
    "Cancelled",
    "InspectionResult",
    "ModelError",
    "ModelSpec",
    "ProgressFn",
    "check_input_shape",
    "inspect_exported",
    "inspect_model",
    "inspect_module",
]
