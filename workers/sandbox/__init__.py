"""Parent side of the sandbox that runs untrusted model files: ``run_sandbox`` starts
``python -m workers.sandbox.child`` with resource limits and collects its JSON result.

Used for Python sources and ``torch.export`` archives (``workers.pipelines.inspect``); the
child imports the engine, the parent needs only the standard library. The namespaces, uid
and private root are built by ``workers.sandbox.isolation``.
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
from pathlib import Path
from typing import Any

from workers.errors import ModelError, ProgressFn, no_progress

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
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


def run_sandbox(
    kind: str,
    path: str,
    progress: ProgressFn = no_progress,
    *,
    input_shape: list[int] | None = None,
    time_limit_s: int = 60,
    memory_mb: int = 4096,
) -> dict[str, Any]:
    """Inspect a user file in ``python -m workers.sandbox.child`` and return its result.

    The child gets RLIMIT_DATA = ``memory_mb`` (heap and anonymous mappings, which is where
    tensors live; RLIMIT_AS alone would count torch's 3.6 GB of mapped libraries), RLIMIT_AS
    as a backstop, RLIMIT_CPU, RLIMIT_FSIZE, no core dumps, its own session (so the whole
    process group can be killed), an empty temporary working directory and an environment
    holding only PATH, PYTHONPATH, HOME (the temp dir) and thread/GPU settings. The wall-clock
    limit is enforced here.

    On top of that it runs isolated (``workers.sandbox.isolation``): its own mount, network,
    pid, IPC and UTS namespaces, another uid without capabilities, RLIMIT_NPROC, a read-only
    root holding only the Python installation, the ``workers`` package and the file, the
    work dir the only writable place, no network at all. This process is made non-dumpable
    first, so its ``/proc`` entries are unreadable to other uids. Where the host cannot
    isolate (probed once, or ``WEIGHTSPACE_SANDBOX=off``) Python sources are refused with a
    ModelError and export archives (which run no user code) run with the limits only.

    Returns the child's JSON result unchecked (the caller checks it: user code ran there).
    Raises ModelError for every failure of the user's model.
    """
    from workers.sandbox import isolation

    isolation.protect_worker()
    isolate = True
    if kind != "probe":
        reason = isolation.unavailable_reason()
        if reason is not None and kind == "python":
            raise ModelError(
                f"This server cannot isolate Python model sources ({reason}); upload a "
                "torch.export archive instead."
            )
        # An export archive runs no code of its own (workers.safety.pt2 checked it), so it
        # keeps working, with the resource limits only, where isolation is unavailable.
        isolate = reason is None
    real_path = os.path.realpath(path)
    # ignore_cleanup_errors: user code may leave files we cannot delete; never mask the result.
    with (
        tempfile.TemporaryDirectory(
            prefix="weightspace-sandbox-", ignore_cleanup_errors=True
        ) as tmp,
        tempfile.TemporaryDirectory(prefix="weightspace-sandbox-root-") as root,
    ):
        output = Path(tmp) / "result.json"
        request: dict[str, Any] = {
            "kind": kind,
            "output": str(output),
            "input_shape": input_shape,
            "threads": _SANDBOX_THREADS,
        }
        pid_r, pid_w = os.pipe()
        if isolate:
            request["isolation"] = isolation.plan(tmp, root, real_path, _PROJECT_ROOT)
            request["pid_fd"] = pid_w
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
        try:
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "workers.sandbox.child",
                        real_path,
                        json.dumps(request),
                    ],
                    cwd=tmp,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_limits(time_limit_s, memory_mb),  # noqa: PLW1509 - setrlimit only
                    start_new_session=True,
                    pass_fds=(pid_w,) if isolate else (),
                )
                os.close(pid_w)
                pid_w = -1
                try:
                    _wait(proc, progress, time_limit_s, pid_r)
                except BaseException:
                    _kill(proc, pid_r)
                    raise
        finally:
            os.close(pid_r)
            if pid_w >= 0:
                os.close(pid_w)
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


def _wait(proc: subprocess.Popen, progress: ProgressFn, time_limit_s: int, pid_r: int) -> None:
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
            _kill(proc, pid_r)
            raise ModelError(f"The model source ran longer than {time_limit_s} s.")
        if now - last_report >= _PROGRESS_INTERVAL_S:
            last_report = now
            # Unknown duration: creep from 0.1 towards 0.9 as the time limit is used up.
            progress(0.1 + 0.8 * (now - start) / time_limit_s, "inspecting the model in a sandbox")


def _kill(proc: subprocess.Popen, pid_r: int) -> None:
    # An isolated child reported the pid of its namespace's init: killing that kills the
    # whole pid namespace, whatever sessions user code made. It is the launcher's child, so
    # its pid cannot have been reused while the launcher has not been reaped.
    ns_init = _read_pid(pid_r)
    if ns_init is not None and proc.poll() is None:
        try:
            os.kill(ns_init, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # The child leads its own session, so this also ends anything it spawned.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _read_pid(fd: int) -> int | None:
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 32)
    except (BlockingIOError, OSError):
        return None
    try:
        return int(data.decode())
    except ValueError:
        return None


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
        return payload.get("result")
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


__all__ = ["run_sandbox"]
