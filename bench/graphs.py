"""Graph benchmark: ``.venv/bin/python bench/graphs.py``.

For each model, in a fresh subprocess (so peak memory of one model never mixes with another's):
build the model on the meta device, build its parameter graph (NiNo) and measure wall time and
the growth of peak resident memory (``ru_maxrss``) during the build. Small models are also built
with real values to time edge features (5 states) and the Laplacian PE (8 eigenvectors). Then
the architecture graph (GHN) is traced on the meta model: nodes, virtual edges, time.
Prints two tables and writes ``bench/results/graphs.json`` (naming cases updates only their rows).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "graphs.json"

# name -> (zoo model, args, time features?, time LPE?)
CASES: dict[str, tuple[str, dict[str, Any], bool, bool]] = {
    "fm16-cnn": ("cnn", {}, True, True),
    "resnet18": ("resnet18", {}, False, False),
    # Torchvision families read from the traced data flow (issue 10, item 7).
    "resnet50": ("resnet50", {}, False, False),
    "vit_b_16": ("vit_b_16", {}, False, False),
    "convnext_tiny": ("convnext_tiny", {}, False, False),
    "densenet121": ("densenet121", {}, False, False),
    # 3-layer d=64 GPT-2 at the reference's 3.43M parameters: our family unties the head, so
    # the vocabulary is halved to keep the parameter count (the reference ties it, vocab 50257).
    "gpt2-3L-d64-3.43M": (
        "transformer",
        {"vocab_size": 25128, "context": 1024, "d_model": 64, "n_layers": 3, "n_heads": 4},
        True,
        True,
    ),
    # The reference's exact GPT-2 shapes (vocab 50257), plus our untied head.
    "gpt2-3L-d64-vocab50257": (
        "transformer",
        {"vocab_size": 50257, "context": 1024, "d_model": 64, "n_layers": 3, "n_heads": 4},
        False,
        False,
    ),
    "llama-6L-d384-111M": (
        "llama",
        {
            "vocab_size": 128_256,
            "context": 2048,
            "d_model": 384,
            "n_layers": 6,
            "n_heads": 6,
            "n_kv_heads": 2,
            "mlp_hidden": 1536,
        },
        False,
        False,
    ),
    # TinyLlama's widths with 8 of its 22 layers: the largest Llama this 24 GB VM builds
    # (~11 GB), on the same line as the 111M row and the 1.1B one.
    "llama-8L-d2048-0.48B": (
        "llama",
        {
            "vocab_size": 32_000,
            "context": 2048,
            "d_model": 2048,
            "n_layers": 8,
            "n_heads": 32,
            "n_kv_heads": 4,
            "mlp_hidden": 5632,
        },
        False,
        False,
    ),
    # A 1.1B Llama shape (TinyLlama's): about 1.1B edges, ~25 GB peak at the measured ~23 bytes
    # per edge, so it runs only when named (``bench/graphs.py llama-22L-d2048-1.1B``) on a
    # machine with the memory (bench/gpu_check.sh runs it on the lent device's 128 GB).
    "llama-22L-d2048-1.1B": (
        "llama",
        {
            "vocab_size": 32_000,
            "context": 2048,
            "d_model": 2048,
            "n_layers": 22,
            "n_heads": 32,
            "n_kv_heads": 4,
            "mlp_hidden": 5632,
        },
        False,
        False,
    ),
}
ON_REQUEST = {"llama-22L-d2048-1.1B"}  # not in the default run (memory)


def _maxrss_mb() -> float:
    # Linux reports kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(case: str) -> dict[str, Any]:
    """Measure one case in this process (called in a child process by ``main``)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from workers.errors import ModelError
    from workers.graphs.params.graph import build_param_graph, graph_features
    from workers.zoo.build import build_model

    name, args, with_features, with_lpe = CASES[case]
    model = build_model(name, args, device="meta")
    row: dict[str, Any] = {
        "model": case,
        "zoo": name,
        "args": args,
        "params": sum(p.numel() for p in model.parameters()),
    }
    row.update(measure_architecture_graph(model, name, args))
    from workers.zoo.build import example_input

    example = example_input(name, args, batch=1, device="meta")
    before = _maxrss_mb()
    start = time.perf_counter()
    try:
        graph = build_param_graph(model, example)
    except ModelError as error:
        row["refused"] = str(error)
        return row
    row["build_s"] = round(time.perf_counter() - start, 3)
    row["peak_mb"] = round(_maxrss_mb() - before, 1)
    row["nodes"] = graph.num_nodes
    row["edges"] = graph.num_edges
    row["graph_mb"] = round((graph.edge_index.numel() * 8 + graph.edge_type.numel() * 8) / 2**20, 1)
    coverage = graph.coverage()
    row["nowcast_share"] = round(coverage["nowcast"] / max(coverage["total"], 1), 4)
    if with_features:
        torch.manual_seed(0)
        real = build_model(name, args)
        states = [dict(real.named_parameters())] * 5
        start = time.perf_counter()
        with torch.no_grad():
            graph_features(graph, states)
        row["features_s"] = round(time.perf_counter() - start, 3)
    if with_lpe:
        start = time.perf_counter()
        graph.lpe(8)
        row["lpe_s"] = round(time.perf_counter() - start, 3)
    return row


def measure_architecture_graph(model: Any, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Trace the GHN architecture graph of a meta-device model; time it."""
    from workers.graphs.arch.graph import architecture_graph
    from workers.zoo.build import example_input

    example = example_input(name, args, device="meta")
    start = time.perf_counter()
    graph = architecture_graph(model, example)
    return {
        "arch_s": round(time.perf_counter() - start, 3),
        "arch_nodes": graph.n_nodes,
        "arch_edges": int(graph.edges.shape[0]),
        "arch_virtual": int(graph.distances.shape[0]),
        "arch_unknown_ops": len(graph.unknown_ops),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _merged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored rows with these replacing (or joining) them: naming cases adds rows."""
    try:
        stored = json.loads(RESULTS.read_text(encoding="utf-8"))["results"]
    except (OSError, ValueError, KeyError):
        stored = []
    fresh = {row["model"]: row for row in rows}
    kept = [fresh.pop(row["model"], row) for row in stored]
    return kept + list(fresh.values())


def main() -> None:
    """Run every case in its own subprocess, print a table, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("cases", nargs="*", help="cases to run (default: all)")
    options = parser.parse_args()
    if options.one:
        print(json.dumps(measure(options.one)))
        return

    rows = []
    for case in options.cases or [c for c in CASES if c not in ON_REQUEST]:
        result = subprocess.run(
            [sys.executable, __file__, "--one", case],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            rows.append({"model": case, "error": result.stderr.strip().splitlines()[-1:]})
        else:
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(f"  {case} done", file=sys.stderr)

    header = ("model", "params", "nodes", "edges", "build_s", "peak_mb", "features_s", "lpe_s")
    widths = [22, 12, 9, 12, 8, 8, 10, 7]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        if "refused" in row or "error" in row:
            reason = row.get("refused") or row.get("error")
            print(f"{row['model']:<22}  {_fmt(row.get('params')):<12}  refused: {reason}")
            continue
        cells = [_fmt(row.get(h)) for h in header]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))

    print()
    header = ("model", "params", "arch_nodes", "arch_edges", "arch_virtual", "arch_s")
    widths = [22, 12, 10, 10, 12, 7]
    print("architecture graph (GHN):")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        cells = [_fmt(row.get(h)) for h in header]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))

    sys.path.insert(0, str(ROOT))
    from workers.provenance import machine_info

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "graphs",
        "machine": machine_info(),  # threads: torch's count in this (the parent) process
        "notes": (
            "build_s and peak_mb cover build_param_graph on a meta-device model (no PE); "
            "peak_mb is the growth of the subprocess's peak RSS during the build; graph_mb is "
            "the size of edge_index + edge_type; features_s: 5 states; lpe_s: 8 eigenvectors; "
            "arch_*: the GHN architecture graph traced on the meta model (arch_virtual: "
            "shortest-path pairs within distance 50)."
        ),
        "results": _merged(rows) if options.cases else rows,
    }
    RESULTS.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
