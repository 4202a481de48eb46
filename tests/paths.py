"""Where the tests find the project and the read-only shared data beside it."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GOLDEN = SHARED / "golden"


def bench_module(name: str):
    """The script ``bench/<name>.py`` as a module (bench/ is scripts, not a package, and
    tests/engine/bench would shadow the name): load it from its path."""
    import importlib.util
    import sys

    key = f"bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
