"""The layout keeps its promises: the web tier never loads torch, only ``workers/tasks`` knows
Django, the worker packages import each other without cycles, and every shared name has one
owner (``workers.catalog``) that both tiers read."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

WORKERS = ROOT / "workers"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(WORKERS.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (typing-only imports
    under ``if TYPE_CHECKING:`` do not run, so they do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_importing_the_whole_web_tier_leaves_torch_out():
    code = (
        "import os, pkgutil, importlib, sys\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'webapp.test_settings'\n"
        "import django; django.setup()\n"
        "import webapp\n"
        "for info in pkgutil.walk_packages(webapp.__path__, 'webapp.'):\n"
        "    if '.migrations' not in info.name and not info.name.endswith('wsgi'):\n"
        "        importlib.import_module(info.name)\n"
        "import webapp.urls\n"
        "heavy = [m for m in ('torch', 'torchvision', 'torch_geometric') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_only_workers_tasks_imports_django_or_the_web_tier():
    offenders = {
        name: sorted(i for i in _imports(path) if i.split(".")[0] in {"django", "webapp"})
        for name, path in _modules().items()
        if not name.startswith("workers.tasks") and name != "workers.celery"
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_web_tier_imports_only_the_torch_free_worker_packages():
    allowed = ("workers.catalog", "workers.safety", "workers.errors", "workers.celery")
    found = {
        str(path.relative_to(ROOT)): sorted(
            i for i in _imports(path)
            if i.startswith("workers") and not i.startswith(allowed) and i != "workers"
        )
        for path in sorted((ROOT / "webapp").rglob("*.py"))
    }  # fmt: skip
    assert {path: names for path, names in found.items() if names} == {}


def test_the_worker_packages_import_each_other_without_cycles():
    modules = _modules()
    graph = {
        name: {i for i in _imports(path) if i in modules and i != name}
        for name, path in modules.items()
    }
    # A package's __init__ that re-exports its own submodules is not a cycle of theirs.
    for name in graph:
        graph[name] = {i for i in graph[name] if not name.startswith(i + ".")}
    cycles = _cycles(graph)
    assert cycles == [], cycles


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return found


@pytest.mark.django_db
def test_every_catalog_accelerator_and_data_set_is_offered_by_the_train_form(owner):
    from webapp.jobs.kinds.train import TrainForm
    from workers.catalog import ACCELERATORS, DATASETS

    form = TrainForm(owner=owner)
    assert [name for name, _ in form.fields["accelerator"].choices] == list(ACCELERATORS)
    builtin = dict(form.fields["dataset"].choices)["Built-in"]
    assert [value for value, _ in builtin] == [f"builtin:{name}" for name in DATASETS]


@pytest.mark.django_db
def test_the_api_form_and_pipeline_share_the_training_defaults(owner):
    from webapp.jobs.kinds import clean_parameters
    from webapp.jobs.kinds.train import TrainForm
    from workers.catalog import TrainSpec

    cleaned = clean_parameters("train", {"dataset": "mnist1d"}, owner)
    assert TrainSpec.from_parameters(cleaned) == TrainSpec(dataset="mnist1d")
    form = TrainForm(owner=owner)
    for name in ("lr", "batch_size", "steps", "eval_every", "period", "optimizer", "accelerator"):
        assert form.fields[name].initial == getattr(TrainSpec(), name), name


def test_a_train_spec_refuses_unknown_parameters_by_name():
    from workers.catalog import TrainSpec

    with pytest.raises(ValueError, match="Unknown train parameter.*: learning_rate"):
        TrainSpec.from_parameters({"dataset": "mnist1d", "learning_rate": 0.1})
