"""Child side of the inspection sandbox: ``python -m workers.sandbox.child PATH REQUEST``.

Started by ``workers.sandbox.run_sandbox`` with resource limits already applied. ``REQUEST``
is a JSON object: ``kind`` ("python", "export", or "probe", which only reports what the
process sees), ``output`` (where to write the result), ``input_shape`` (optional override),
``threads`` and, for the isolated run, ``isolation`` and ``pid_fd``. The result is written as JSON
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": "...", "kind": "model" |
"memory"}`` to ``output``, never to stdout, which user code may print to.

A "python" file must define ``build_model()`` returning an ``nn.Module`` and ``INPUT_SHAPE``
(the input shape without the batch dimension). It may define ``INPUT_DTYPE = "int64"`` for
models that take token ids (default "float32").
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
import traceback
from types import ModuleType
from typing import Any

_MEMORY_MARKERS = (
    "can't allocate memory",
    "Cannot allocate memory",
    "not enough memory",
    "out of memory",
)


def main(argv: list[str]) -> int:
    """Run one inspection request; exit status 0 when a result (or error) was written.

    A request holding ``isolation`` (a plan from ``workers.sandbox.isolation.plan``) first
    moves into its namespaces and reruns this module there without the plan, as pid 2 of a
    new pid namespace; see ``workers.sandbox.isolation``.
    """
    path, request = argv[1], json.loads(argv[2])
    if "isolation" in request:
        from workers.sandbox.isolation import launch

        iso = request.pop("isolation")
        pid_fd = request.pop("pid_fd", None)
        inner = [sys.executable, "-m", "workers.sandbox.child", path, json.dumps(request)]
        return launch(iso, inner, pid_fd)
    if request["kind"] == "probe":
        from workers.sandbox.isolation import probe_result

        _write(request["output"], {"ok": True, "result": probe_result()})
        return 0
    try:
        result = _run(request["kind"], path, request.get("input_shape"), request["threads"])
        payload: dict[str, Any] = {"ok": True, "result": result.to_json()}
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message for the user
        kind = "memory" if _is_memory_error(exc) else "model"
        payload = {"ok": False, "error": _describe(exc), "kind": kind}
    except SystemExit as exc:
        payload = {
            "ok": False,
            "error": f"The model source called exit({exc.code}).",
            "kind": "model",
        }
    _write(request["output"], payload)
    return 0


def _run(kind: str, path: str, input_shape: list[int] | None, threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    from workers.pipelines.inspect import inspect_exported

    if kind == "export":
        return inspect_exported(path)
    if kind != "python":
        raise ValueError(f"unknown sandbox request kind {kind!r}")
    module = _load_user_module(path)
    build = getattr(module, "build_model", None)
    if not callable(build):
        raise UserError("The model source must define a function build_model().")
    shape = input_shape or _declared_shape(module)
    dtype_name = getattr(module, "INPUT_DTYPE", "float32")
    if dtype_name not in ("float32", "int64"):
        raise UserError('INPUT_DTYPE must be "float32" or "int64".')
    dtype = torch.long if dtype_name == "int64" else torch.float32

    # Meta tensors make big models free to inspect; code that needs real data (value-
    # dependent control flow, custom kernels) fails there and is retried on the CPU.
    try:
        with torch.device("meta"):
            model = _built(build)
        return _inspect(model, shape, dtype, "meta")
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - retried below, where the real error surfaces
        pass
    return _inspect(_built(build), shape, dtype, "cpu")


class UserError(Exception):
    """A mistake in the user's file, reported verbatim."""


def _load_user_module(path: str) -> ModuleType:
    # SourceFileLoader accepts any file name (uploads are stored without a .py suffix).
    name = "weightspace_user_model"
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    loader.exec_module(module)
    return module


def _declared_shape(module: ModuleType) -> list[int]:
    shape = getattr(module, "INPUT_SHAPE", None)
    if (
        not isinstance(shape, tuple | list)
        or not shape
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape)
    ):
        raise UserError(
            "The model source must define INPUT_SHAPE, a tuple of positive integers without "
            "the batch dimension, e.g. INPUT_SHAPE = (3, 32, 32)."
        )
    return list(shape)


def _built(build: Any) -> Any:
    from torch import nn

    model = build()
    if not isinstance(model, nn.Module):
        raise UserError(f"build_model() must return a torch.nn.Module, not {type(model).__name__}.")
    return model.eval()


def _inspect(model: Any, shape: list[int], dtype: Any, device: str) -> Any:
    import torch

    from workers.pipelines.inspect import inspect_module

    if dtype == torch.long:
        example = torch.zeros((2, *shape), dtype=dtype, device=device)
    else:
        example = torch.randn((2, *shape), dtype=dtype, device=device)
    return inspect_module(model, example)


def _is_memory_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError) or any(m in str(seen) for m in _MEMORY_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    # The last line of the traceback ("NameError: name 'x' is not defined") is what a user
    # needs; torch's C++ errors can be long, so keep the first line of the message only.
    line = traceback.format_exception_only(exc)[-1].strip().splitlines()[0]
    return line[:500]


def _write(output: str, payload: dict[str, Any]) -> None:
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f)
    os.replace(tmp, output)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
