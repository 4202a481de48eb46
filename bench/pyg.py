"""What PyG ``MessagePassing`` costs NiNo: the layers as shipped vs the plain-torch ones before.

Run (from the repository root)::

    .venv/bin/python bench/pyg.py                          # all cases, both implementations
    .venv/bin/python bench/pyg.py fm16 mlp                 # some cases
    .venv/bin/python bench/pyg.py gpt2 --impl torch        # one implementation
    .venv/bin/python bench/pyg.py --baseline 69d0569       # baseline layers from that commit

Two implementations of the same network, loaded with the published ``nino_no_posw`` weights:

- ``torch``: ``workers/nino/model.py`` as of ``--baseline`` (a git revision, default
  ``69d0569``, the last commit with hand-written message passing), read with ``git show`` and
  imported under another name;
- ``pyg``: ``workers.nino.model`` as it is now (``FiLMConv``/``EdgeUpdate`` are
  ``torch_geometric.nn.MessagePassing`` subclasses).

Operations, each in a fresh subprocess with ``--threads`` (1) threads, on random edge features
(ctx 5) and random positional encodings (the cost does not depend on the values):

- ``forward``: the full-graph forward pass without gradients;
- ``train``: forward + mean-L1 loss + backward, the meta-training step (``workers.nino.metatrain``);
- ``predict``: the edge-chunked inference the optimizer runs (one horizon, chunks of 16,384 edges).

Cases: ``fm16`` (the zoo's ``cnn``, 2,057 edges), ``mlp`` (the zoo's default ``mlp``, 110,375
edges) and ``gpt2`` (a 3-layer d=64 GPT-2 of 3.43M parameters, 3,485,692 edges; ``predict``
only, since the full-graph pass needs tens of GB at that size).

Both implementations run in the same subprocess and take turns repeat by repeat (in
alternating order), so that load on a shared machine hits them alike. Measured per operation:
``time_s``, the fastest repeat after one warm-up call each (noise only ever adds time; the
median is kept as ``median_s``); ``tensor_peak_mb``, the most tensor storage the operation had
allocated and alive at one time, counted op by op by a dispatch mode in one more call. For
``gpt2`` each implementation makes two calls without warm-up, going first once and second
once (the second of two ~30 s calls ran ~3% slower, whichever it was), timed with the count
running (on the 110k-edge ``mlp`` the count changed ``predict`` by less than the noise).
The count is exact and the same from run to run; the process's peak RSS is not (glibc keeps
freed memory mapped, and identical runs differed by 50-100 MB), so it is not reported.
``checksum`` is the sum of the output (``train``: the loss), to show both implementations
compute the same thing.

Prints a table and writes ``bench/results/pyg.json``; a partial run replaces only the rows it
measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "pyg.json"
DEFAULT_BASELINE = "69d0569"
EDGE_CHUNK = 1 << 14  # the optimizer's default (NowcastConfig.edge_chunk)
IMPLS = ("torch", "pyg")

# name -> (zoo family, args, operations, repeats); gpt2's calls are long: counted, no warm-up.
CASES: dict[str, tuple[str, dict[str, Any], tuple[str, ...], int]] = {
    "fm16": ("cnn", {}, ("forward", "train", "predict"), 50),
    "mlp": ("mlp", {}, ("forward", "train", "predict"), 5),
    "gpt2": (
        "transformer",
        {"vocab_size": 25128, "context": 1024, "d_model": 64, "n_layers": 3, "n_heads": 4},
        ("predict",),
        2,
    ),
}


def _tensor_peak_mb(call: Any) -> tuple[Any, float]:
    """Peak bytes of tensor storage allocated by ``call()`` and alive at the same time.

    Every aten op is seen by a dispatch mode that records the storages of its newly allocated
    outputs (not views or in-place results, which the op's schema marks as aliases), with weak
    references, so that a storage counts until it is freed. Unlike the RSS this does not
    depend on what the C allocator keeps mapped, so it is the same from run to run.
    """
    import torch
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveStorage(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live: dict[int, tuple[Any, int]] = {}
            self.peak = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            # Forget freed storages before the op, so that a reused address counts again.
            self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
            out = func(*args, **(kwargs or {}))
            returns = func._schema.returns
            values = out if len(returns) > 1 else (out,)
            for ret, value in zip(returns, values, strict=False):
                if ret.alias_info is not None:
                    continue  # a view or an in-place result: no new storage
                for leaf in tree_leaves(value):
                    if isinstance(leaf, torch.Tensor) and leaf.device.type == "cpu":
                        storage = leaf.untyped_storage()
                        ref = (StorageWeakRef(storage), storage.nbytes())
                        self.live.setdefault(storage.data_ptr(), ref)
            self.peak = max(self.peak, sum(n for _, n in self.live.values()))
            return out

    with LiveStorage() as mode:
        result = call()
    return result, mode.peak / 2**20


def _load_model_class(impl: str, baseline_file: str | None) -> Any:
    if impl == "pyg":
        from workers.nino.model import NiNoModel

        return NiNoModel
    assert baseline_file is not None
    import workers.nino  # noqa: F401  (the baseline's relative imports resolve in it)

    name = "workers.nino._bench_baseline_model"
    spec = importlib.util.spec_from_file_location(name, baseline_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.NiNoModel


def measure(
    case: str, op: str, impls: list[str], threads: int, baseline_file: str | None
) -> list[dict]:
    """One (case, operation) for each implementation, in this process (``main`` runs a child).

    Both implementations live in the same process and take turns, repeat by repeat (in
    alternating order), so that load on a shared machine hits them alike.
    """
    import torch

    from workers.graphs.params.graph import build_param_graph
    from workers.zoo.build import build_model

    torch.set_num_threads(threads)
    family, args, _, repeats = CASES[case]
    long_calls = case == "gpt2"
    models = {
        impl: _load_model_class(impl, baseline_file).from_checkpoint("nino_no_posw")
        for impl in impls
    }
    graph = build_param_graph(build_model(family, args, device="meta"))
    gen = torch.Generator().manual_seed(0)
    cfg = next(iter(models.values())).config
    edge_attr = torch.randn(graph.num_edges, cfg.max_feat_size * cfg.ctx, generator=gen)
    pe = torch.randn(graph.num_nodes, cfg.lpe, generator=gen)
    inputs = (graph.edge_index, graph.edge_type, edge_attr, pe)

    def run(impl: str) -> float:
        nino = models[impl]
        if op == "forward":
            with torch.no_grad():
                return float(nino(*inputs).double().sum())
        if op == "train":
            nino.train()
            nino.zero_grad(set_to_none=True)
            loss = nino(*inputs).abs().mean()
            loss.backward()
            return loss.item()
        return float(nino.predict(*inputs, 1, edge_chunk=EDGE_CHUNK).double().sum())

    times: dict[str, list[float]] = {impl: [] for impl in impls}
    checksums: dict[str, float] = {}
    peaks: dict[str, float] = {}
    if long_calls:
        # Long calls, timed with the storage count running (its per-op cost is lost in calls
        # this long, and alike for both); each implementation goes first once.
        for r in range(repeats):
            for impl in impls if r % 2 == 0 else impls[::-1]:
                start = time.perf_counter()
                checksums[impl], peaks[impl] = _tensor_peak_mb(lambda impl=impl: run(impl))
                times[impl].append(time.perf_counter() - start)
    else:
        for impl in impls:
            run(impl)  # warm-up: first-call allocations, PyG's compiled propagate
        for r in range(repeats):
            for impl in impls if r % 2 == 0 else impls[::-1]:
                start = time.perf_counter()
                checksums[impl] = run(impl)
                times[impl].append(time.perf_counter() - start)
        for impl in impls:  # a separate call: the count slows small operations down
            _, peaks[impl] = _tensor_peak_mb(lambda impl=impl: run(impl))
    rows = []
    for impl in impls:
        rows.append(
            {
                "case": case,
                "op": op,
                "impl": impl,
                "nodes": graph.num_nodes,
                "edges": graph.num_edges,
                "repeats": repeats,
                "time_s": round(min(times[impl]), 5),
                "median_s": round(statistics.median(times[impl]), 5),
                "times_s": [round(t, 5) for t in times[impl]],
                "tensor_peak_mb": round(peaks[impl], 1),
                "checksum": checksums[impl],
            }
        )
    return rows


def _baseline_source(rev: str) -> tuple[str, str]:
    """The baseline model.py written to a temporary file, and the commit it came from."""
    commit = subprocess.run(
        ["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    source = subprocess.run(
        ["git", "show", f"{commit}:workers/nino/model.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "MessagePassing" in source:
        raise SystemExit(f"--baseline {rev}: that model.py already uses MessagePassing")
    tmp = Path(tempfile.mkdtemp(prefix="bench-pyg-")) / "baseline_model.py"
    tmp.write_text(source)
    return str(tmp), commit


def _table(rows: list[dict]) -> str:
    by_key = {(r["case"], r["op"], r["impl"]): r for r in rows}
    lines = [
        "| case | op | edges | torch (s) | pyg (s) | pyg/torch | peak torch (MB) | peak pyg (MB) "
        "| same output |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    for case, (_, _, ops, _) in CASES.items():
        for op in ops:
            t, p = by_key.get((case, op, "torch")), by_key.get((case, op, "pyg"))
            if t is None and p is None:
                continue
            edges = (t or p)["edges"]
            ratio, same = "-", "-"
            if t and p:
                ratio = f"{p['time_s'] / t['time_s']:.2f}"
                scale = max(abs(t["checksum"]), 1.0)
                same = "yes" if abs(t["checksum"] - p["checksum"]) <= 1e-6 * scale else "NO"
            lines.append(
                f"| {case} | {op} | {edges:,} | {t['time_s'] if t else '-'} | "
                f"{p['time_s'] if p else '-'} | {ratio} | {t['tensor_peak_mb'] if t else '-'} | "
                f"{p['tensor_peak_mb'] if p else '-'} | {same} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help=f"some of {', '.join(CASES)} (default: all)")
    parser.add_argument("--impl", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)  # case op impl... (child)
    parser.add_argument("--baseline-file", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        case, op, *impls = options.one
        print(json.dumps(measure(case, op, impls, options.threads, options.baseline_file)))
        return

    unknown = sorted(set(options.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {list(CASES)}")
    cases = options.cases or list(CASES)
    baseline_file, commit = _baseline_source(options.baseline)
    rows: list[dict] = []
    for case in cases:
        for op in CASES[case][2]:
            command = [sys.executable, __file__, "--one", case, op, *options.impl]
            command += ["--threads", str(options.threads), "--baseline-file", baseline_file]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                tail = (done.stderr.strip().splitlines() or ["?"])[-1]
                raise SystemExit(f"{case} {op} failed: {tail}")
            rows += json.loads(done.stdout.strip().splitlines()[-1])
            times = ", ".join(f"{r['impl']} {r['time_s']} s" for r in rows[-len(options.impl) :])
            print(f"  {case} {op}: {times}", file=sys.stderr)

    from workers.provenance import machine_info

    previous = json.loads(options.out.read_text())["results"] if options.out.exists() else []
    measured = {(r["case"], r["op"], r["impl"]) for r in rows}
    kept = [r for r in previous if (r["case"], r["op"], r["impl"]) not in measured]
    results = kept + rows
    print(_table(results))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "pyg",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(options.threads),
        "baseline": {"rev": options.baseline, "commit": commit},
        "edge_chunk": EDGE_CHUNK,
        "notes": "torch: workers/nino/model.py at the baseline commit (plain-torch message "
        "passing); pyg: the current one (MessagePassing layers). Both take turns in one "
        "process. time_s: fastest repeat after a warm-up call, median_s: median (gpt2: two "
        "calls each, no warm-up, each implementation first once); tensor_peak_mb: most "
        "tensor storage allocated by the call and alive at once (dispatch-mode count, in a "
        "separate call except for gpt2); checksum: sum of the output (train: the loss). "
        "One thread, edge chunks of 16,384 for predict.",
        "results": results,
    }
    options.out.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
