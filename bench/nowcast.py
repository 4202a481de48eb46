"""Cost of one NiNo nowcast as models grow: ``.venv/bin/python bench/nowcast.py [sizes…]``.

For each size (Llama-style decoders of about 1M, 10M and 100M parameters), in a fresh
subprocess with one thread: build the model, its parameter graph and positional encodings, then
time one nowcast (5 context states -> predicted parameters, edge-chunked inference) with the
published ``nino_no_posw`` checkpoint, and record the peak resident memory of the process.
Prints a table and writes ``bench/results/nowcast.json``. The machine is shared and noisy:
compare sizes within one run.
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
RESULTS = ROOT / "bench" / "results" / "nowcast.json"

SIZES: dict[str, dict[str, int]] = {
    "1M": {"vocab_size": 2048, "context": 256, "d_model": 128, "n_layers": 4, "n_heads": 4,
           "n_kv_heads": 2, "mlp_hidden": 256},
    "10M": {"vocab_size": 8192, "context": 512, "d_model": 256, "n_layers": 8, "n_heads": 4,
            "n_kv_heads": 2, "mlp_hidden": 768},
    "100M": {"vocab_size": 128_256, "context": 2048, "d_model": 384, "n_layers": 6,
             "n_heads": 6, "n_kv_heads": 2, "mlp_hidden": 1536},
}  # fmt: skip


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: str) -> dict[str, Any]:
    """One size, in this process (``main`` runs it in a child)."""
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(1)
    from workers.nino import load_model
    from workers.nino.optimizer import NiNo
    from workers.zoo.build import build_model

    torch.manual_seed(0)
    model = build_model("llama", SIZES[size])
    params = sum(p.numel() for p in model.parameters())
    meta = load_model("nino_no_posw")
    start = time.perf_counter()
    optimizer = NiNo(torch.optim.AdamW(model.parameters()), model, meta)  # graph + PE
    setup_s = time.perf_counter() - start
    # Five context states: the weights plus small drifts, as training would give.
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    states = [{n: t + 1e-3 * i * torch.randn_like(t) for n, t in base.items()} for i in range(5)]
    del base
    start = time.perf_counter()
    predicted = optimizer.nowcast(states, k=40)
    nowcast_s = time.perf_counter() - start
    finite = all(torch.isfinite(t).all() for t in predicted.values())
    return {
        "size": size,
        "params": params,
        "nodes": optimizer.graph.num_nodes,
        "edges": optimizer.graph.num_edges,
        "setup_s": round(setup_s, 2),
        "nowcast_s": round(nowcast_s, 2),
        "peak_mb": round(_peak_mb()),
        "finite": finite,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("sizes", nargs="*", default=list(SIZES))
    options = parser.parse_args()
    if options.one:
        print(json.dumps(measure(options.one)))
        return
    rows = []
    for size in options.sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--one", size], capture_output=True, text=True
        )
        if done.returncode:
            rows.append({"size": size, "error": (done.stderr.strip().splitlines() or ["?"])[-1]})
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {size} done", file=sys.stderr)
    header = ("size", "params", "nodes", "edges", "setup_s", "nowcast_s", "peak_mb", "finite")
    print("  ".join(f"{h:>12}" for h in header))
    for row in rows:
        if "error" in row:
            print(f"{row['size']:>12}  error: {row['error']}")
            continue
        print("  ".join(f"{row[h]:>12,}" if isinstance(row[h], int) and not isinstance(row[h], bool)
                        else f"{row[h]!s:>12}" for h in header))  # fmt: skip
    sys.path.insert(0, str(ROOT))
    from workers.provenance import machine_info

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "nowcast",
                "machine": machine_info(1),  # every size is measured with one thread
                "notes": "setup_s: parameter graph + Laplacian PE; nowcast_s: one jump "
                "(scaling, edge features, edge-chunked NiNo, read-back); peak_mb: peak RSS of "
                "the whole process (model, 5 context states, graph, features).",
                "results": rows,
            },
            indent=1,
        )
        + "\n"
    )  # fmt: skip


if __name__ == "__main__":
    main()
