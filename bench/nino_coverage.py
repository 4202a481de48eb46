"""How much of every torchvision classifier NiNo can nowcast.

Run: ``.venv/bin/python bench/nino_coverage.py [models…]``.

For each model of ``torchvision.models.list_models(module=torchvision.models)`` (built on the
meta device, so no weights are allocated; the few whose constructors compute on tensors are
built on the CPU with initialisation skipped), read the parameter graph from the traced data
flow (``workers.graphs.params.traced.traced_coverage``: the same reading ``build_param_graph``
does, without writing the edges) and record whether it is accepted, the share of parameter
elements nowcast, what is left to the base optimizer and why, or the refusal's reason.
Prints a table and the median share, and writes ``bench/results/nino_coverage.json``.
The issue's goal: at least 72 of the 80 accepted, median share at least 90%.

Run it under ``flock /tmp/bench.lock`` on shared machines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "nino_coverage.json"


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """Skip weight initialisation (the values are never read): CPU builds get fast."""
    import torch

    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    for n in names:
        setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def _build(name: str) -> tuple[Any, str]:
    import torch
    import torchvision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                return torchvision.models.get_model(name), "meta"
        except (NotImplementedError, RuntimeError):  # e.g. RegNet widths computed on tensors
            with _no_init():
                return torchvision.models.get_model(name), "cpu"


def measure(name: str) -> dict[str, Any]:
    """One classifier: accepted or not, share nowcast, what is left, timings."""
    from workers.errors import ModelError
    from workers.graphs.params.traced import traced_coverage

    model, device = _build(name)
    params = sum(p.numel() for p in model.parameters())
    row: dict[str, Any] = {"model": name, "params": params, "built_on": device}
    start = time.perf_counter()
    try:
        coverage = traced_coverage(model)
    except ModelError as error:
        row.update(accepted=False, share=0.0, reason=str(error))
    else:
        row.update(
            accepted=coverage["nowcast"] > 0,
            share=coverage["nowcast"] / coverage["total"],
            nowcast=coverage["nowcast"],
            left=coverage["left"],
        )
    row["read_s"] = round(time.perf_counter() - start, 2)
    del model
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="only these (default: every classifier)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch
    import torchvision

    torch.set_num_threads(1)
    names = args.models or torchvision.models.list_models(module=torchvision.models)
    rows = []
    print(f"{'model':24s} {'params':>12s} {'accepted':>8s} {'nowcast':>8s}  left / reason")
    for name in names:
        row = measure(name)
        rows.append(row)
        note = row.get("reason") or "; ".join(
            sorted({e["reason"] for e in row.get("left", [])})
        )
        print(f"{name:24s} {row['params']:12,d} {str(row['accepted']):>8s} "
              f"{row['share']:8.1%}  {note[:90]}", flush=True)  # fmt: skip
    accepted = [r for r in rows if r["accepted"]]
    median = statistics.median(r["share"] for r in rows) if rows else 0.0
    print(f"\naccepted {len(accepted)} of {len(rows)}; median share nowcast {median:.1%} "
          f"(all models; refused count as 0)")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "description": (
            "Parameter-graph coverage of every torchvision classifier, read from the traced "
            "data flow (workers.graphs.params.traced). share = parameter elements nowcast / "
            "all parameter elements; refused models count as 0 in the median."
        ),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "accepted": len(accepted),
        "models": len(rows),
        "median_share": median,
        "rows": rows,
    }
    args.output.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
