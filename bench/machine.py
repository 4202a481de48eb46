"""What a benchmark ran on: kept for scripts that import it from here.

The helper lives in :mod:`workers.provenance` (the meta-training manifests record the same
facts); new code imports it from there.
"""

from __future__ import annotations

from workers.provenance import machine_info

__all__ = ["machine_info"]
