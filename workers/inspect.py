"""Engine entry point for "inspect a model": parameters, layers and the module graph.

The Celery adapter calls ``inspect_model``. Catalog ("zoo") models are trusted code and are
inspected in this process, on the meta device when possible (no memory, no compute).
User-supplied files are not: Python sources and ``torch.export`` archives are handled by
``workers.sandbox`` in a child process with CPU, memory and wall-clock limits, a temporary
working directory and a scrubbed environment (archives are also checked statically first by
``workers.safe_pt2``).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.common import Cancelled, ModelError

ProgressFn = Callable[[float, str], None]

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Address space torch needs on top of the data limit: importing torch maps ~3.6 GB of shared
# libraries and per-thread arenas reserve more, none of which is memory really in use.
_ADDRESS_SPACE_HEADROOM_MB = 8192
# Cap on files the sandbox writes (its result JSON, captured output, anything user code
# writes), so a runaway print loop cannot fill the disk.
_MAX_FILE_BYTES = 256 << 20
_SANDBOX_THREADS = max(1, min(4, os.cpu_count() or 1))
_PROGRESS_INTERVAL_S = 2.0
_MEMORY_MARKERS = (
    "MemoryError",
    "can't allocate memory",
    "Cannot allocate memory",
    "not enough memory",
    "std::bad_alloc",
    "out of memory",
)


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


def _no_progress(fraction: float, message: str) -> None:
    pass


def inspect_model(
    spec: ModelSpec,
    progress: ProgressFn = _no_progress,
    *,
    python_time_limit_s: int = 60,
    python_memory_mb: int = 4096,
) -> dict[str, Any]:
    """Inspect a model and return a JSON-able summary.

    Returns ``{"num_params", "num_tensors", "tensors", "layers", "input_shape", "graph",
    "device"}`` where ``tensors`` is ``parameter_table``'s rows, ``layers`` the leaf-layer
    counts, ``graph`` the module graph document and ``device`` "cuda" when real tensors were
    placed on a GPU, else "cpu" (meta-only inspections report "cpu").

    ``progress(fraction, message)`` is called at each stage and about every two seconds while
    a sandbox runs; it may raise ``Cancelled``, which stops the work (killing the sandbox) and
    propagates. Bad input of any kind raises ``ModelError`` with a message for humans. The
    limits apply to the sandbox used for "python" and "export" sources.
    """
    if spec.source == "zoo":
        return _inspect_zoo(spec, progress)
    if spec.source not in ("python", "export"):
        raise ModelError(f"Unknown model source {spec.source!r}.")
    if not spec.path or not os.path.isfile(spec.path):
        raise ModelError("The uploaded model file is missing.")
    progress(0.05, "checking the file")
    if spec.source == "export":
        from workers.safe_pt2 import check_pt2

        check_pt2(spec.path)
    result = run_sandbox(
        spec.source,
        spec.path,
        progress,
        input_shape=spec.input_shape,
        time_limit_s=python_time_limit_s,
        memory_mb=python_memory_mb,
    )
    progress(1.0, "done")
    return result


# ----------------------------------------------------------------------------- zoo


def _inspect_zoo(spec: ModelSpec, progress: ProgressFn) -> dict[str, Any]:
    import torch

    from workers.zoo.build import build_model
    from workers.zoo.catalog import get_entry, input_shape, validate_args

    try:
        validate_args(spec.name, spec.args)
        shape = _checked_shape(spec.input_shape) or input_shape(spec.name, spec.args)
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


def _checked_shape(shape: Any) -> list[int] | None:
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


def inspect_module(model: Any, example: Any, progress: ProgressFn = _no_progress) -> dict:
    """Inspection result for an ``nn.Module`` and an example input batch (batch dim first).

    Shared by the zoo path and the sandbox; exceptions from tracing propagate.
    """
    import torch

    from workers.graphs.module_graph import layer_summary, module_graph, parameter_table

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
    return {
        "num_params": sum(row["numel"] for row in tensors),
        "num_tensors": len(tensors),
        "tensors": tensors,
        "layers": layer_summary(model),
        "input_shape": list(example.shape[1:]),
        "graph": graph,
        **graphs,
        "device": "cuda" if on_gpu else "cpu",
    }


def neural_graphs(model: Any, example: Any = None) -> dict[str, Any]:
    """The GHN architecture graph and the NiNo parameter-graph summary, as JSON documents.

    Either may be impossible for a given model; then its document says why (``error`` or
    ``supported: false``) instead of failing the inspection.
    """
    from workers.graphs.arch_graph import architecture_graph
    from workers.graphs.summary import param_graph_summary

    try:
        arch = architecture_graph(model, example).to_json()
    except Exception as exc:  # noqa: BLE001 - reported on the page, the inspection goes on
        arch = {"error": f"The architecture graph could not be built: {_last_line(exc)}"}
    return {"arch_graph": arch, "param_graph": param_graph_summary(model)}


def inspect_exported(path: str) -> dict[str, Any]:
    """Inspection result for a ``.pt2`` archive (run this in the sandbox, never in a worker).

    Parameters are the lifted parameters of the program (buffers excluded), which matches
    ``sum(p.numel() for p in model.parameters())`` of the exported model. The input shape is
    the first example input without its first (batch) dimension.
    """
    import torch

    from workers.graphs.module_graph import graph_from_exported, layers_from_graph

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
    return {
        "num_params": sum(row["numel"] for row in tensors),
        "num_tensors": len(tensors),
        "tensors": tensors,
        "layers": layers_from_graph(graph),
        "input_shape": _exported_input_shape(ep, graph),
        "graph": graph,
        **neural_graphs(ep.module()),
        "device": "cpu",
    }


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


# ----------------------------------------------------------------------------- sandbox


def run_sandbox(
    kind: str,
    path: str,
    progress: ProgressFn = _no_progress,
    *,
    input_shape: list[int] | None = None,
    time_limit_s: int = 60,
    memory_mb: int = 4096,
) -> dict[str, Any]:
    """Inspect a user file in ``python -m workers.sandbox`` and return its result.

    The child gets RLIMIT_DATA = ``memory_mb`` (heap and anonymous mappings, which is where
    tensors live; RLIMIT_AS alone would count torch's 3.6 GB of mapped libraries), RLIMIT_AS
    as a backstop, RLIMIT_CPU, RLIMIT_FSIZE, no core dumps, its own session (so the whole
    process group can be killed), an empty temporary working directory and an environment
    holding only PATH, PYTHONPATH, HOME (the temp dir) and thread/GPU settings. The wall-clock
    limit is enforced here. Raises ModelError for every failure of the user's model.
    """
    _checked_shape(input_shape)
    # ignore_cleanup_errors: user code may leave files we cannot delete; never mask the result.
    with tempfile.TemporaryDirectory(
        prefix="weightspace-sandbox-", ignore_cleanup_errors=True
    ) as tmp:
        output = Path(tmp) / "result.json"
        request = {
            "kind": kind,
            "output": str(output),
            "input_shape": input_shape,
            "threads": _SANDBOX_THREADS,
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(_PROJECT_ROOT),
            "HOME": tmp,
            "TMPDIR": tmp,
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": str(_SANDBOX_THREADS),
            "MKL_NUM_THREADS": str(_SANDBOX_THREADS),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        log_path = Path(tmp) / "output.log"
        progress(0.1, "starting the sandbox")
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workers.sandbox",
                    os.path.abspath(path),
                    json.dumps(request),
                ],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_limits(time_limit_s, memory_mb),  # noqa: PLW1509 - setrlimit only
                start_new_session=True,
            )
            try:
                _wait(proc, progress, time_limit_s)
            except BaseException:
                _kill(proc)
                raise
        return _collect(proc.returncode, output, log_path, time_limit_s, memory_mb)


def _limits(time_limit_s: int, memory_mb: int) -> Callable[[], None]:
    data = memory_mb << 20
    address_space = (memory_mb + _ADDRESS_SPACE_HEADROOM_MB) << 20
    # CPU time adds up over threads; the wall-clock limit is the real one, this is a backstop
    # that also catches a child that somehow escapes the kill.
    cpu = time_limit_s * _SANDBOX_THREADS + 5

    def apply() -> None:
        # Runs in the child between fork and exec: only plain system calls here.
        resource.setrlimit(resource.RLIMIT_DATA, (data, data))
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (_MAX_FILE_BYTES, _MAX_FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _wait(proc: subprocess.Popen, progress: ProgressFn, time_limit_s: int) -> None:
    start = time.monotonic()
    last_report = start
    while True:
        try:
            proc.wait(timeout=0.2)
            return
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now - start > time_limit_s:
            _kill(proc)
            raise ModelError(f"The model source ran longer than {time_limit_s} s.")
        if now - last_report >= _PROGRESS_INTERVAL_S:
            last_report = now
            # Unknown duration: creep from 0.1 towards 0.9 as the time limit is used up.
            progress(0.1 + 0.8 * (now - start) / time_limit_s, "inspecting the model in a sandbox")


def _kill(proc: subprocess.Popen) -> None:
    # The child leads its own session, so this also ends anything it spawned.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _collect(
    returncode: int, output: Path, log_path: Path, time_limit_s: int, memory_mb: int
) -> dict[str, Any]:
    log_tail = _tail(log_path)
    payload: Any = None
    if output.is_file():
        try:
            payload = json.loads(output.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            payload = None
    if isinstance(payload, dict) and payload.get("ok") is True and returncode == 0:
        return _checked_result(payload.get("result"))
    if isinstance(payload, dict) and payload.get("ok") is False:
        if payload.get("kind") == "memory":
            raise ModelError(f"The model source used more than {memory_mb} MB.")
        raise ModelError(str(payload.get("error") or "The model source failed."))
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise ModelError(f"The model source ran longer than {time_limit_s} s.")
    if any(marker in log_tail for marker in _MEMORY_MARKERS):
        raise ModelError(f"The model source used more than {memory_mb} MB.")
    if returncode == -signal.SIGXFSZ:
        raise ModelError("The model source wrote too much output.")
    if returncode < 0:
        raise ModelError(f"The model source crashed ({signal.Signals(-returncode).name}).")
    last = next((ln for ln in reversed(log_tail.splitlines()) if ln.strip()), "")
    if returncode == 0:
        raise ModelError("The model source exited without producing a result.")
    raise ModelError(last.strip()[:500] or f"The model source failed (exit code {returncode}).")


def _tail(path: Path, limit: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _checked_result(result: Any) -> dict[str, Any]:
    # The child ran user code, which could have tampered with what it wrote: check the
    # structure before anything downstream relies on it.
    expected = {
        "num_params": int,
        "num_tensors": int,
        "tensors": list,
        "layers": dict,
        "input_shape": list,
        "graph": dict,
        "arch_graph": dict,
        "param_graph": dict,
        "device": str,
    }
    if not isinstance(result, dict) or any(
        not isinstance(result.get(key), kind) for key, kind in expected.items()
    ):
        raise ModelError("The sandbox returned a malformed result.")
    if not isinstance(result["graph"].get("nodes"), list):
        raise ModelError("The sandbox returned a malformed graph.")
    return {key: result[key] for key in expected}


def _last_line(exc: BaseException) -> str:
    import traceback

    return traceback.format_exception_only(exc)[-1].strip()


__all__ = [
    "Cancelled",
    "ModelError",
    "ModelSpec",
    "ProgressFn",
    "inspect_exported",
    "inspect_model",
    "inspect_module",
    "run_sandbox",
]
