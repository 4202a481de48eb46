"""Training trajectories for meta-training NiNo: collect them, store them compactly, read windows.

A *trajectory store* is a directory with

* ``index.json`` — one entry per run: family, model arguments, data set, optimizer settings,
  seed, steps, snapshot spacing, the parameter names and shapes (in ``named_parameters``
  order) and the step of every stored snapshot;
* ``runs/<id>.npy`` — one float16 ``.npy`` array per run, shape ``[num_checkpoints,
  num_params]``: row ``i`` is the flat concatenation of all parameters (in the index's order)
  at step ``i * spacing`` (row 0 is the initialisation). It is written through
  ``np.lib.format.open_memmap`` and read back with ``np.load(mmap_mode="r")``, so a window
  reads only its 45 rows.

The index is rewritten after every finished run, so an interrupted collection leaves a
usable store. Runs flagged ``heldout`` are kept out of meta-training (quick evaluation).

Meta-training windows (:func:`make_window`): ``ctx`` context rows ``start .. start+ctx-1`` and
up to ``horizons`` future rows after them, all at the run's spacing. Each parameter tensor is
standardised with one mean/std over its ``ctx`` context states (as ``scale_states`` does at
inference); the targets are the scaled future states minus the scaled last context state,
laid out like ``NiNoModel``'s output ``[E, 9, horizons]``, with a mask that is False for
auxiliary edges, unused kernel positions and horizons past the end of the run.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from workers.graphs.params.graph import MAX_FEAT, ParamGraph, build_param_graph, graph_features
from workers.nino.scaling import scale_states
from workers.zoo.hf import small_config

__all__ = [
    "DEFAULT_DATA_DIR",
    "PRESETS",
    "RunSpec",
    "TrajectoryStore",
    "Window",
    "collect",
    "collect_run",
    "graph_for",
    "make_window",
]

_REPO_ROOT = Path(__file__).resolve().parents[2]
#: Default store location: inside the repository's ignored ``var/``.
DEFAULT_DATA_DIR = _REPO_ROOT / "var" / "nino-data"
INDEX_NAME = "index.json"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# What to collect
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One training run to record: a built-in model on a built-in data set with AdamW.

    ``family`` "hf" is a Hugging Face causal LM with ``args = {"config": {...}}`` (a config
    dict as ``workers.zoo.hf.build_hf_model`` reads it), trained character-level on a text
    data set fitted to the config's vocabulary, with the config's context (at most 128).
    """

    family: str  # "cnn", "mlp", "transformer" (workers.zoo.build names) or "hf"
    args: dict[str, Any]
    dataset: str  # "fashion-mnist", "mnist1d", "pydoc", "shakespeare"
    seed: int
    steps: int
    spacing: int = 200
    lr: float = 6e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    heldout: bool = False

    @property
    def run_id(self) -> str:
        """A readable, unique-enough file name for the run."""
        if self.family == "cnn":
            arch = "c" + "-".join(str(c) for c in self.args["channels"])
        elif self.family == "mlp":
            arch = "h" + "-".join(str(h) for h in self.args["hidden"])
        elif self.family == "hf":
            from workers.zoo.hf import config_facts

            facts = config_facts(self.args["config"])
            arch = f"{facts.model_type}-d{facts.hidden_size}l{facts.num_layers}"
        else:
            arch = f"d{self.args.get('d_model')}l{self.args.get('n_layers')}"
        tag = "-heldout" if self.heldout else ""
        return f"{self.dataset}-{self.family}-{arch}-lr{self.lr:g}-s{self.seed}{tag}"


def _fm(channels: list[int], seed: int, steps: int, heldout: bool = False) -> RunSpec:
    # NiNo's FM tasks: AdamW, lr 6e-3, no weight decay, batch 128.
    return RunSpec("cnn", {"channels": channels}, "fashion-mnist", seed, steps, heldout=heldout)


def _m1d(hidden: list[int], seed: int, steps: int, lr: float = 3e-3) -> RunSpec:
    return RunSpec("mlp", {"in_features": 40, "hidden": hidden}, "mnist1d", seed, steps, lr=lr)


def _lm(d_model: int, seed: int, steps: int) -> RunSpec:
    args = {"vocab_size": 96, "context": 64, "d_model": d_model, "n_layers": 2, "n_heads": 2}
    return RunSpec("transformer", args, "pydoc", seed, steps, lr=3e-3, batch_size=32)


def _llama(seed: int, steps: int, heldout: bool = False, **changes: Any) -> RunSpec:
    # bench/nino_families.py's Llama family and its AdamW settings (lr 3e-3, batch 32).
    config = small_config("llama-2x64", **changes)
    return RunSpec("hf", {"config": config}, "shakespeare", seed, steps, lr=3e-3, batch_size=32,
                   heldout=heldout)  # fmt: skip


#: Named collections. "small" takes about 10-15 minutes of one CPU core; the held-out FM/16 run
#: (seed 100) is only used for the quick evaluation, never for meta-training.
PRESETS: dict[str, list[RunSpec]] = {
    "tiny": [  # seconds; for tests and smoke runs
        _m1d([16], 0, 1200),
        _m1d([16, 16], 1, 1200),
    ],
    "small": [
        _fm([8, 16, 16], 0, 9000),
        _fm([16, 32, 32], 0, 9000),
        _fm([24, 48, 48], 0, 3000),
        _m1d([32, 32], 0, 10_000),
        _m1d([64, 32], 1, 10_000, lr=1e-3),
        _m1d([48], 2, 10_000),
        _fm([8, 16, 16], 1, 9000),
        _m1d([32], 3, 10_000),
        _m1d([32, 32], 4, 10_000, lr=1e-3),
        _m1d([16, 16], 5, 10_000),
        _m1d([64], 6, 10_000, lr=1e-3),
        _m1d([24, 24], 7, 10_000, lr=6e-3),
        _fm([16, 32, 32], 100, 9000, heldout=True),
    ],
    # bench/nino_families.py's Llama (about 12.8 steps/s on one core) and one narrower width,
    # about 11 minutes of one core. Seeds 0-2 are the benchmark's evaluation seeds: not here.
    "llama": [
        _llama(10, 2400),
        _llama(11, 2400),
        _llama(12, 2400, hidden_size=48, intermediate_size=128),
        _llama(100, 2000, heldout=True),
    ],
    "full": [
        *[_fm(c, s, 10_000) for c in ([8, 16, 16], [16, 32, 32], [24, 48, 48]) for s in (0, 1, 2)],
        *[
            _m1d(h, s, 10_000, lr)
            for h in ([32, 32], [64, 64], [64, 32], [48], [128, 64])
            for s, lr in ((0, 3e-3), (1, 1e-3))
        ],
        *[_lm(d, s, 10_000) for d in (24, 32) for s in (0, 1)],
        _fm([16, 32, 32], 100, 10_000, heldout=True),
    ],
}


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


def _print(message: str) -> None:
    print(message, flush=True)


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


@dataclass
class TrajectoryStore:
    """A trajectory directory: ``index.json`` plus one float16 ``.npy`` per run."""

    root: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: Free-form facts about how the store was made (e.g. the collect command and preset).
    info: dict[str, Any] = field(default_factory=dict)
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> TrajectoryStore:
        """Read an existing store's index (arrays are memory-mapped lazily)."""
        root = Path(root)
        index = root / INDEX_NAME
        if not index.is_file():
            raise FileNotFoundError(f"no trajectory index at {index}; run `collect` first")
        payload = json.loads(index.read_text())
        if payload.get("version") != FORMAT_VERSION:
            raise ValueError(f"{index}: unsupported trajectory format {payload.get('version')}")
        return cls(root=root, runs=list(payload["runs"]), info=dict(payload.get("info", {})))

    @classmethod
    def create(cls, root: str | os.PathLike[str]) -> TrajectoryStore:
        """Open the store at ``root`` for appending, creating it when absent."""
        root = Path(root)
        (root / "runs").mkdir(parents=True, exist_ok=True)
        if (root / INDEX_NAME).is_file():
            return cls.open(root)
        store = cls(root=root)
        store.save_index()
        return store

    def save_index(self) -> None:
        payload = {"version": FORMAT_VERSION, "info": self.info, "runs": self.runs}
        _write_json(self.root / INDEX_NAME, payload)

    def run(self, run_id: str) -> dict[str, Any]:
        for entry in self.runs:
            if entry["id"] == run_id:
                return entry
        raise KeyError(run_id)

    def array(self, run_id: str) -> np.ndarray:
        """The run's ``[num_checkpoints, num_params]`` float16 array, memory-mapped read-only."""
        if run_id not in self._arrays:
            entry = self.run(run_id)
            self._arrays[run_id] = np.load(self.root / entry["file"], mmap_mode="r")
        return self._arrays[run_id]

    def add_run(
        self,
        meta: Mapping[str, Any],
        param_shapes: Sequence[tuple[str, Sequence[int]]],
        num_checkpoints: int,
    ) -> tuple[dict[str, Any], np.ndarray]:
        """Allocate a run's array (float16, zero-filled) and return its entry and memmap.

        The entry is only added to the index by :meth:`finish_run`.
        """
        num_params = sum(math.prod(shape) for _, shape in param_shapes)
        run_id = str(meta["id"])
        file = f"runs/{run_id}.npy"
        array = np.lib.format.open_memmap(
            self.root / file, mode="w+", dtype=np.float16, shape=(num_checkpoints, num_params)
        )
        entry = {
            **dict(meta),
            "file": file,
            "num_checkpoints": num_checkpoints,
            "num_params": num_params,
            "params": [[name, list(shape)] for name, shape in param_shapes],
        }
        return entry, array

    def finish_run(self, entry: dict[str, Any], array: np.ndarray) -> None:
        """Flush the run's array and record it in the index (replacing a run of the same id)."""
        if isinstance(array, np.memmap):
            array.flush()
        self.runs = [r for r in self.runs if r["id"] != entry["id"]] + [entry]
        self._arrays.pop(entry["id"], None)
        self.save_index()

    def training_runs(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if not r.get("heldout")]


def flat_params(model: nn.Module) -> np.ndarray:
    """All parameters of ``model`` concatenated in ``named_parameters`` order, as float16."""
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).float().cpu() for p in model.parameters()])
    return flat.numpy().astype(np.float16)


def unflatten(entry: Mapping[str, Any], row: np.ndarray | Tensor) -> dict[str, Tensor]:
    """Parameter dict (float32) from one stored row, or ``[n, num_params]`` rows (stacked)."""
    flat = torch.as_tensor(np.asarray(row, dtype=np.float32))
    out: dict[str, Tensor] = {}
    offset = 0
    for name, shape in entry["params"]:
        size = math.prod(shape)
        out[name] = flat[..., offset : offset + size].reshape(*flat.shape[:-1], *shape)
        offset += size
    return out


# --------------------------------------------------------------------------------------------
# Collecting
# --------------------------------------------------------------------------------------------


def _context(family: str, args: Mapping[str, Any]) -> int:
    """The text window of a run's model (image data sets ignore it)."""
    if family == "hf":
        from workers.zoo.hf import context_length

        return context_length(args["config"])
    return int(args.get("context", 128))


def _dataset(name: str, context: int = 128) -> Any:
    from workers.data import datasets

    if name == "fashion-mnist":
        return datasets.fashion_mnist()
    if name == "mnist1d":
        return datasets.mnist1d()
    if name in ("pydoc", "shakespeare"):
        from workers.data.text import text_corpus

        return text_corpus(name, context=context)
    raise KeyError(f"unknown data set {name!r}")


def _fit_data(spec: RunSpec, data: Any) -> Any:
    """``data`` as the run's model reads it: an HF config's vocabulary may need UTF-8 bytes
    (``fit_vocabulary``, as a train job and bench/nino_families.py fit it)."""
    if spec.family != "hf":
        return data
    from workers.data.text import fit_vocabulary

    return fit_vocabulary(data, int(spec.args["config"]["vocab_size"]))


def _model_for(spec: RunSpec, data: Any) -> nn.Module:
    from workers.zoo.build import build_model

    if spec.family == "hf":
        from workers.zoo.hf import build_hf_model

        return build_hf_model(dict(spec.args["config"]))
    args = dict(spec.args)
    if spec.family == "transformer":
        args["vocab_size"] = data.info.num_classes
    return build_model(spec.family, args)


def collect_run(
    store: TrajectoryStore,
    spec: RunSpec,
    data: Any | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train one run with AdamW and record its parameters every ``spec.spacing`` steps.

    Row ``i`` holds the parameters before optimizer step ``i * spacing + 1`` (row 0 is the
    initialisation), which is when the NiNo optimizer takes its snapshots too. Batches follow
    ``train_batches(batch, seed, epoch)`` like ``workers.training.loop.train``.
    """
    from workers.data.datasets import task_loss

    data = data if data is not None else _dataset(spec.dataset, _context(spec.family, spec.args))
    data = _fit_data(spec, data)
    torch.manual_seed(spec.seed)
    model = _model_for(spec, data).train()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    num_ckpt = spec.steps // spec.spacing + 1
    shapes = [(n, list(p.shape)) for n, p in model.named_parameters()]
    meta = {
        "id": spec.run_id,
        "family": spec.family,
        "args": dict(spec.args),
        "dataset": spec.dataset,
        "seed": spec.seed,
        "steps": spec.steps,
        "spacing": spec.spacing,
        "optimizer": "adamw",
        "lr": spec.lr,
        "weight_decay": spec.weight_decay,
        "batch_size": spec.batch_size,
        "heldout": spec.heldout,
    }
    if spec.family == "transformer":
        meta["args"]["vocab_size"] = data.info.num_classes
    entry, array = store.add_run(meta, shapes, num_ckpt)
    started = time.perf_counter()
    array[0] = flat_params(model)
    step, epoch, losses = 0, 0, []
    while step < spec.steps:
        for x, y in data.train_batches(spec.batch_size, spec.seed, epoch):
            loss = task_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % spec.spacing == 0:
                array[step // spec.spacing] = flat_params(model)
                losses.append(round(loss.item(), 5))
            if step >= spec.steps:
                break
        epoch += 1
    entry["train_loss_at_checkpoints"] = losses
    entry["wall_time_s"] = round(time.perf_counter() - started, 2)
    if not np.isfinite(np.asarray(array, dtype=np.float32)).all():
        raise FloatingPointError(f"run {spec.run_id} has non-finite parameters (float16 overflow?)")
    store.finish_run(entry, array)
    if log is not None:
        log(
            f"  {spec.run_id}: {num_ckpt} checkpoints x {entry['num_params']} params, "
            f"final loss {losses[-1] if losses else float('nan'):.4f}, {entry['wall_time_s']} s"
        )
    return entry


def collect(
    out: str | os.PathLike[str],
    specs: Sequence[RunSpec],
    *,
    skip_existing: bool = True,
    log: Callable[[str], None] | None = _print,
    info: Mapping[str, Any] | None = None,
) -> TrajectoryStore:
    """Collect ``specs`` into the store at ``out``; runs already in its index are skipped.

    ``info`` (e.g. the preset and command) is merged into the index's ``info``.
    """
    store = TrajectoryStore.create(out)
    if info:
        store.info.update(info)
        store.save_index()
    cache: dict[str, Any] = {}
    for spec in specs:
        if skip_existing and any(r["id"] == spec.run_id for r in store.runs):
            if log is not None:
                log(f"  {spec.run_id}: already collected")
            continue
        key = f"{spec.dataset}|{_context(spec.family, spec.args)}"
        if key not in cache:
            cache[key] = _dataset(spec.dataset, _context(spec.family, spec.args))
        collect_run(store, spec, cache[key], log)
    return store


# --------------------------------------------------------------------------------------------
# Windows for meta-training
# --------------------------------------------------------------------------------------------


@dataclass
class GraphInfo:
    """An architecture's parameter graph, positional encodings and per-edge position mask."""

    graph: ParamGraph
    pe: Tensor
    position_mask: Tensor  # [E, 9] bool: True where a parameter value sits


_GRAPHS: dict[str, GraphInfo] = {}


def _arch_key(entry: Mapping[str, Any]) -> str:
    return json.dumps([entry["family"], entry["args"]], sort_keys=True)


def graph_for(entry: Mapping[str, Any], lpe: int = 8) -> GraphInfo:
    """Graph, PE and mask of a run's architecture, built once per architecture (cached).

    The model is built on the meta device (no memory). An HF causal LM's graph is traced on
    one window of token ids, the input a NiNo optimizer traces in a train job; the tracer
    reads shapes only, so zeros of the window's shape stand in for the text.
    """
    key = _arch_key(entry) + f"|{lpe}"
    if key not in _GRAPHS:
        if entry["family"] == "hf":
            from workers.zoo.hf import build_hf_model

            model = build_hf_model(dict(entry["args"]["config"]), device="meta")
            window = torch.zeros(1, _context("hf", entry["args"]), dtype=torch.long)
            graph = build_param_graph(model, window)
        else:
            from workers.zoo.build import build_model

            model = build_model(entry["family"], dict(entry["args"]), device="meta")
            graph = build_param_graph(model)
        ones = {name: torch.ones(shape) for name, shape in graph.param_shapes.items()}
        used = graph_features(graph, ones) != 0
        used[graph.aux_mask] = False
        _GRAPHS[key] = GraphInfo(graph=graph, pe=graph.lpe(lpe).float(), position_mask=used)
    return _GRAPHS[key]


@dataclass
class Window:
    """One meta-training example (see the module doc)."""

    edge_index: Tensor  # [2, E]
    edge_type: Tensor  # [E]
    edge_attr: Tensor  # [E, 9 * ctx], scaled context states
    pe: Tensor  # [N, lpe]
    target: Tensor  # [E, 9, horizons], scaled future minus scaled last context state
    mask: Tensor  # [E, 9, horizons] bool


def make_window(
    store: TrajectoryStore,
    run_id: str,
    start: int,
    *,
    ctx: int = 5,
    horizons: int = 40,
    stride: int = 1,
    lpe: int = 8,
) -> Window:
    """Context rows ``start, start+stride, ...`` (``ctx`` of them) and up to ``horizons`` futures.

    ``stride`` > 1 uses every ``stride``-th stored row (a coarser spacing). Missing futures
    (past the end of the run) have target 0 and mask False.
    """
    entry = store.run(run_id)
    array = store.array(run_id)
    n = array.shape[0]
    last = start + (ctx - 1) * stride
    if start < 0 or last >= n:
        raise ValueError(f"window start {start} needs rows up to {last}, run has {n}")
    rows_ctx = np.arange(start, last + 1, stride)
    rows_fut = np.arange(last + stride, min(n, last + stride * horizons + 1), stride)
    ctx_params = unflatten(entry, array[rows_ctx])
    states = [{k: v[t] for k, v in ctx_params.items()} for t in range(ctx)]
    scaled, scales = scale_states(states)
    info = graph_for(entry, lpe)
    graph = info.graph
    edge_attr = graph_features(graph, scaled)
    num_fut = len(rows_fut)
    target = torch.zeros(graph.num_edges, MAX_FEAT, horizons)
    mask = torch.zeros(graph.num_edges, MAX_FEAT, horizons, dtype=torch.bool)
    if num_fut:
        fut_params = unflatten(entry, array[rows_fut])
        futures = [{k: v[t] for k, v in fut_params.items()} for t in range(num_fut)]
        fut_scaled, _ = scale_states(futures, scales)
        fut = graph_features(graph, fut_scaled).view(graph.num_edges, MAX_FEAT, num_fut)
        last_scaled = edge_attr.view(graph.num_edges, MAX_FEAT, ctx)[:, :, -1:]
        target[:, :, :num_fut] = fut - last_scaled
        mask[:, :, :num_fut] = info.position_mask.unsqueeze(-1)
    target[~mask] = 0.0
    return Window(graph.edge_index, graph.edge_type, edge_attr, info.pe, target, mask)


def collate(windows: Sequence[Window]) -> Window:
    """Disjoint union of windows (node ids offset), so one forward pass serves a batch."""
    offset, edges = 0, []
    for w in windows:
        edges.append(w.edge_index + offset)
        offset += w.pe.shape[0]
    return Window(
        edge_index=torch.cat(edges, dim=1),
        edge_type=torch.cat([w.edge_type for w in windows]),
        edge_attr=torch.cat([w.edge_attr for w in windows]),
        pe=torch.cat([w.pe for w in windows]),
        target=torch.cat([w.target for w in windows]),
        mask=torch.cat([w.mask for w in windows]),
    )


def valid_starts(entry: Mapping[str, Any], ctx: int = 5, stride: int = 1) -> int:
    """How many window starts of a run have at least one future state."""
    return max(0, entry["num_checkpoints"] - ctx * stride)
