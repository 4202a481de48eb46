"""Engine tests run without Django: make the project root importable on its own.

Run them alone with ``pytest tests/engine -p no:django --confcutdir=tests/engine`` (the
confcutdir keeps the Django-specific ``tests/conftest.py`` out) or as part of the full suite.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
