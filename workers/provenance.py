"""Where a result came from: file digests, the software and machine, and manifests.

Shared by the meta-training commands (``workers.nino.metatrain``, ``workers.ghn.metatrain``),
checkpoint verification (``workers.nino.checkpoints``) and the benchmarks (``bench/``), so
that every manifest and results file records these facts the same way. Torch-light: torch is
imported only inside the functions that report its version or thread count.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

# Read in blocks so that hashing a multi-GB checkpoint does not hold it in memory.
_BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def software_info(threads: int | None = None) -> dict[str, Any]:
    """``torch`` and ``python`` versions and ``threads`` (default: torch's current count)."""
    import torch

    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads() if threads is None else threads,
    }


def _cpu_model() -> str:
    # platform.processor() is often empty or just "x86_64" on Linux; /proc/cpuinfo names it.
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """``software_info`` plus the CPU model and count, the platform and the load right now.

    Benchmarks record it once per invocation: wall times are only comparable on one machine,
    and the load average says how shared it was.
    """
    return {
        **software_info(threads),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_manifest(
    path: str | os.PathLike[str], manifest: dict[str, Any], *, indent: int = 2
) -> Path:
    """Write ``manifest`` as JSON (``indent``, a final newline) to ``path``; return the path."""
    path = Path(path)
    path.write_text(json.dumps(manifest, indent=indent) + "\n")
    return path


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in the manifest file at ``path``."""
    return json.loads(Path(path).read_text())
