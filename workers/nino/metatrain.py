"""Meta-train our own NiNo model on trajectories collected here (no published weights needed).

Commands (all single-threaded by default; ``--threads`` changes it)::

    python -m workers.nino.metatrain collect --out var/nino-data --preset small
    python -m workers.nino.metatrain train --data var/nino-data \\
        --out workers/nino/weights/nino_ours.pt --steps 6000 --seed 0
    python -m workers.nino.metatrain eval --data var/nino-data \\
        --weights workers/nino/weights/nino_ours.pt
    python -m workers.nino.metatrain all --preset small --steps 6000 --seed 0   # all three

Fine-tuning the published model on one family's trajectories (here the HF Llama of
``bench/nino_families.py``; ``--init`` names the checkpoint to start from)::

    python -m workers.nino.metatrain collect --out var/nino-llama/data --preset llama
    python -m workers.nino.metatrain train --data var/nino-llama/data --init nino_no_posw \\
        --lr 3e-4 --steps 150 --batch 1 --max-minutes 12 --out var/nino-llama/nino_llama.pt
    python -m workers.nino.metatrain eval --data var/nino-llama/data \\
        --weights nino_no_posw var/nino-llama/nino_llama.pt --manifest var/nino-llama/manifest.json

Training follows the published recipe (``docs/NINO.md``): windows of ``ctx`` = 5 states at the
runs' spacing (200 steps) and the next 40, targets are the future deltas in the per-tensor
scaled space, loss = masked L1 over the 40 horizons (auxiliary edges, unused kernel positions
and missing horizons masked), AdamW lr 3e-3 with cosine decay, weight decay 1e-2, gradient
clipping at 5. The model is :class:`~workers.nino.model.NiNoModel` with the published
configuration, from scratch unless ``--init`` names a checkpoint to fine-tune; the file has the
published layout ``{"state_dict", "model_args"}`` so it loads with
``workers.nino.load_model(OURS_PATH)``.

A ``manifest.json`` next to the weights records the data, the training settings and results,
and the command that made them.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.graphs.params.graph import graph_features, params_from_features
from workers.nino.checkpoints import OURS_PATH
from workers.nino.model import NiNoConfig, NiNoModel, load_model
from workers.nino.scaling import scale_states, unscale
from workers.nino.trajectories import (
    DEFAULT_DATA_DIR,
    PRESETS,
    TrajectoryStore,
    Window,
    collate,
    collect,
    graph_for,
    make_window,
    unflatten,
    valid_starts,
)
from workers.provenance import read_manifest, software_info, write_manifest
from workers.tensors import cpu_state_dict

__all__ = [
    "OURS_PATH",
    "TrainConfig",
    "batch_loss",
    "evaluate_nowcast",
    "masked_l1",
    "meta_train",
    "save_weights",
    "train_step",
]

_WEIGHTS_DIR = OURS_PATH.parent
MANIFEST_NAME = "manifest.json"


def _print(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class TrainConfig:
    """Meta-training settings; the defaults are the published recipe, except ``steps``."""

    steps: int = 6000
    batch: int = 4  # windows (graphs) per step, joined into one disjoint graph
    lr: float = 3e-3
    weight_decay: float = 1e-2
    grad_clip: float = 5.0
    seed: int = 0
    ctx: int = 5
    horizons: int = 40
    init: str | None = None  # None: from scratch; else a checkpoint to fine-tune
    max_minutes: float | None = None  # stop early (recorded) when the wall time runs out
    log_every: int = 100


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the entries where ``mask`` is True."""
    weight = mask.to(pred.dtype)
    return (torch.abs(pred - target) * weight).sum() / weight.sum().clamp(min=1.0)


def _sampler(
    store: TrajectoryStore, ctx: int, rng: np.random.Generator
) -> Callable[[], tuple[str, int]]:
    """Draw (run, start) uniformly over all window starts of all training runs."""
    runs = [r for r in store.training_runs() if valid_starts(r, ctx) > 0]
    if not runs:
        raise ValueError(f"{store.root} holds no training run with more than {ctx} checkpoints")
    counts = np.array([valid_starts(r, ctx) for r in runs], dtype=np.float64)
    probs = counts / counts.sum()

    def draw() -> tuple[str, int]:
        i = int(rng.choice(len(runs), p=probs))
        return runs[i]["id"], int(rng.integers(0, counts[i]))

    return draw


def batch_loss(model: NiNoModel, batch: Window) -> torch.Tensor:
    """Masked L1 of the model's 40-horizon deltas on a (collated) window."""
    pred = model(batch.edge_index, batch.edge_type, batch.edge_attr, batch.pe)
    return masked_l1(pred, batch.target, batch.mask)


def train_step(
    model: NiNoModel, opt: torch.optim.Optimizer, batch: Window, grad_clip: float = 5.0
) -> float:
    """One meta-training step (loss, backward, clipping, update); returns the loss."""
    loss = batch_loss(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss.item()


def new_model(init: str | None) -> NiNoModel:
    """The published NiNo configuration, freshly initialised or loaded from ``init``."""
    if init:
        model = load_model(init)
        if not isinstance(model, NiNoModel):
            raise ValueError(f"{init} is not a NiNo GNN checkpoint")
        return model.train()
    return NiNoModel(NiNoConfig())


def meta_train(
    store: TrajectoryStore,
    config: TrainConfig,
    *,
    log: Callable[[str], None] | None = _print,
) -> tuple[NiNoModel, dict[str, Any]]:
    """Meta-train a NiNo model on the store's training runs; return it and a summary."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = new_model(config.init).train()
    if model.config.ctx != config.ctx or model.config.seq_len != config.horizons:
        raise ValueError("ctx/horizons must match the model configuration")
    draw = _sampler(store, config.ctx, rng)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    started = time.perf_counter()
    losses: list[float] = []
    curve: list[tuple[int, float]] = []
    stopped_early = False
    step = 0
    for step in range(1, config.steps + 1):
        batch = collate(
            [
                make_window(store, *draw(), ctx=config.ctx, horizons=config.horizons)
                for _ in range(config.batch)
            ]
        )
        losses.append(train_step(model, opt, batch, config.grad_clip))
        sched.step()
        if step % config.log_every == 0 or step == config.steps:
            recent = float(np.mean(losses[-config.log_every :]))
            curve.append((step, round(recent, 5)))
            if log is not None:
                elapsed = time.perf_counter() - started
                log(
                    f"  step {step}/{config.steps} loss {recent:.4f} "
                    f"lr {sched.get_last_lr()[0]:.2e} {elapsed:.0f}s"
                )
        if (
            config.max_minutes is not None
            and time.perf_counter() - started > config.max_minutes * 60
        ):
            stopped_early = True
            if log is not None:
                log(f"  stopping early at step {step}: --max-minutes {config.max_minutes} reached")
            break
    model.eval()
    summary = {
        "steps_done": step,
        "stopped_early": stopped_early,
        "final_loss": round(float(np.mean(losses[-min(len(losses), 200) :])), 5),
        "first_loss": round(float(np.mean(losses[: min(len(losses), 20)])), 5),
        "loss_curve": curve,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    return model, summary


def save_weights(model: NiNoModel, path: str | Path) -> Path:
    """Write ``{"state_dict", "model_args"}`` as the published checkpoints are laid out.

    ``model_args`` lists only what differs from ``NiNoConfig``'s defaults plus
    ``wte_pos_enc`` (as the published nino_no_posw does), so the file reads with
    ``torch.load(weights_only=True)`` and loads strictly through ``load_model``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    defaults = asdict(NiNoConfig())
    model_args = {k: v for k, v in asdict(model.config).items() if v != defaults[k]}
    model_args["wte_pos_enc"] = False
    # A copy: the file then holds each tensor alone, not the storage it may be a view of.
    state = cpu_state_dict(model, copy=True)
    torch.save({"state_dict": state, "model_args": model_args}, path)
    return path


# --------------------------------------------------------------------------------------------
# Quick evaluation: k-step nowcasts on a held-out trajectory
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def nowcast_errors(
    model: NiNoModel,
    store: TrajectoryStore,
    run_id: str,
    starts: Sequence[int],
    ks: Sequence[int],
    ctx: int = 5,
) -> dict[int, dict[str, float]]:
    """Mean |predicted - true| over all parameters, ``k`` spacings after the last context state.

    For every start and k: the model's nowcast (the inference path: scale, ``predict``,
    ``unscale``), "no change" (the last context state) and linear extrapolation of the last
    two context states. Averaged over the starts for which row ``last + k`` exists. Only the
    parameters the graph holds are compared (a traced graph may leave some to the base
    optimizer, which NiNo then leaves as they are).
    """
    entry = store.run(run_id)
    array = store.array(run_id)
    info = graph_for(entry, model.config.lpe)
    graph = info.graph
    held = [name for name, _ in entry["params"] if name in graph.param_shapes]
    kept = torch.cat(  # which elements of a stored row the graph holds
        [torch.full((math.prod(shape),), name in held) for name, shape in entry["params"]]
    )
    sums: dict[int, dict[str, list[float]]] = {
        k: {"model": [], "no_change": [], "linear": []} for k in ks
    }  # noqa: E501
    for start in starts:
        last = start + ctx - 1
        if last >= array.shape[0]:
            continue
        ctx_params = unflatten(entry, array[start : last + 1])
        states = [{n: v[t] for n, v in ctx_params.items()} for t in range(ctx)]
        scaled, scales = scale_states(states)
        edge_attr = graph_features(graph, scaled)
        all_h = model.predict(graph.edge_index, graph.edge_type, edge_attr, info.pe)
        for k in ks:
            if last + k >= array.shape[0]:
                continue
            truth = torch.as_tensor(np.asarray(array[last + k], dtype=np.float32))[kept]
            pred = unscale(params_from_features(graph, all_h[:, :, k - 1]), scales)
            flat_pred = torch.cat([pred[n].reshape(-1) for n in held])
            flat_last = torch.as_tensor(np.asarray(array[last], dtype=np.float32))[kept]
            flat_prev = torch.as_tensor(np.asarray(array[last - 1], dtype=np.float32))[kept]
            sums[k]["model"].append(float((flat_pred - truth).abs().mean()))
            sums[k]["no_change"].append(float((flat_last - truth).abs().mean()))
            linear = flat_last + k * (flat_last - flat_prev)
            sums[k]["linear"].append(float((linear - truth).abs().mean()))
    return {
        k: {name: float(np.mean(v)) for name, v in d.items() if v} | {"n": len(d["model"])}
        for k, d in sums.items()
    }


def evaluate_nowcast(
    store: TrajectoryStore,
    models: dict[str, NiNoModel],
    *,
    run_id: str | None = None,
    starts: Sequence[int] = (0, 1, 3, 5, 10, 15, 20, 30),
    ks: Sequence[int] = (1, 5, 10, 20, 40),
) -> dict[str, Any]:
    """Compare models (and the trivial baselines) on the held-out run (the first by default)."""
    if run_id is None:
        held = [r for r in store.runs if r.get("heldout")]
        if not held:
            raise ValueError(f"{store.root} has no held-out run")
        run_id = held[0]["id"]
    table: dict[str, Any] = {"run": run_id, "starts": list(starts), "ks": list(ks), "l1": {}}
    baselines: dict[int, dict[str, float]] = {}
    for name, model in models.items():
        errors = nowcast_errors(model, store, run_id, starts, ks)
        table["l1"][name] = {
            str(k): round(e["model"], 7) for k, e in errors.items() if "model" in e
        }
        baselines = errors
    for base in ("no_change", "linear"):
        table["l1"][base] = {str(k): round(e[base], 7) for k, e in baselines.items() if base in e}
    table["n_starts"] = {str(k): e["n"] for k, e in baselines.items()}
    return table


def _format_table(table: dict[str, Any]) -> str:
    ks = table["ks"]
    lines = [
        f"held-out run {table['run']}: mean |param error| at k spacings ahead",
        f"{'method':<16}" + "".join(f"{'k=' + str(k):>12}" for k in ks),
    ]
    for name, row in table["l1"].items():
        lines.append(f"{name:<16}" + "".join(f"{row.get(str(k), float('nan')):>12.3e}" for k in ks))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _command_line() -> str:
    return " ".join([".venv/bin/python -m workers.nino.metatrain", *map(shlex.quote, sys.argv[1:])])


def _data_summary(store: TrajectoryStore) -> dict[str, Any]:
    runs = [
        {
            k: r[k]
            for k in (
                "id",
                "family",
                "args",
                "dataset",
                "seed",
                "steps",
                "spacing",
                "lr",
                "weight_decay",
                "batch_size",
                "num_params",
                "num_checkpoints",
                "heldout",
                "wall_time_s",
            )
            if k in r
        }
        for r in store.runs
    ]
    return {
        **store.info,
        "families": sorted({f"{r['family']}/{r['dataset']}" for r in store.runs}),
        "training_runs": len(store.training_runs()),
        "heldout_runs": [r["id"] for r in store.runs if r.get("heldout")],
        "collect_wall_time_s": round(sum(r.get("wall_time_s", 0.0) for r in store.runs), 1),
        "runs": runs,
    }


def cmd_collect(args: argparse.Namespace) -> None:
    specs = PRESETS[args.preset]
    print(f"collecting preset {args.preset!r} ({len(specs)} runs) into {args.out}")
    t0 = time.perf_counter()
    command = (
        ".venv/bin/python -m workers.nino.metatrain collect "
        f"--out {args.out} --preset {args.preset}"
    )
    collect(args.out, specs, info={"preset": args.preset, "collect_command": command})
    print(f"collect done in {time.perf_counter() - t0:.0f}s")


def cmd_train(args: argparse.Namespace) -> None:
    store = TrajectoryStore.open(args.data)
    config = TrainConfig(
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        init=args.init,
        max_minutes=args.max_minutes,
    )
    print(f"meta-training on {len(store.training_runs())} runs: {config}")
    model, summary = meta_train(store, config)
    out = save_weights(model, args.out)
    manifest = {
        "file": out.name,
        "description": (
            "NiNo GNN (published configuration) meta-trained by Weightspace on its own "
            "trajectories"
            + (f", fine-tuned from {config.init}" if config.init else ", from scratch")
        ),
        "initialisation": config.init or "scratch",
        "size_bytes": out.stat().st_size,
        "data": _data_summary(store),
        "training": {
            **asdict(config),
            "loss": "masked L1 over 40 future deltas in the per-tensor scaled space",
            "optimizer": "AdamW, cosine schedule",
            **summary,
            **software_info(),  # torch, python, threads
        },
        "command": args.command_line,
    }
    manifest_path = Path(args.manifest) if args.manifest else out.with_name(MANIFEST_NAME)
    write_manifest(manifest_path, manifest, indent=1)
    print(
        f"saved {out} ({out.stat().st_size / 1e6:.1f} MB), final loss {summary['final_loss']}, "
        f"{summary['wall_time_s']}s; manifest {manifest_path}"
    )


def cmd_eval(args: argparse.Namespace) -> None:
    store = TrajectoryStore.open(args.data)
    models: dict[str, NiNoModel] = {}
    for spec in args.weights:
        name = Path(spec).name.removesuffix(".pt")
        loaded = load_model(spec)
        if not isinstance(loaded, NiNoModel):
            raise SystemExit(f"{spec} is not a NiNo GNN checkpoint")
        models[name] = loaded
    try:
        table = evaluate_nowcast(store, models)
    except ValueError as exc:  # e.g. a store without a held-out run
        print(f"no quick evaluation: {exc}")
        return
    print(_format_table(table))
    manifest_path = Path(args.manifest) if args.manifest else None
    if manifest_path is not None and manifest_path.is_file():
        manifest = read_manifest(manifest_path)
        manifest["quick_eval"] = {**table, "command": getattr(args, "command_line", None)}
        write_manifest(manifest_path, manifest, indent=1)
        print(f"recorded in {manifest_path}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workers.nino.metatrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    sub = parser.add_subparsers(dest="cmd", required=True)

    def data_arg(p: argparse.ArgumentParser, flag: str) -> None:
        p.add_argument(flag, default=str(DEFAULT_DATA_DIR), help="trajectory store directory")

    def train_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--steps", type=int, default=TrainConfig.steps)
        p.add_argument("--batch", type=int, default=TrainConfig.batch)
        p.add_argument("--lr", type=float, default=TrainConfig.lr)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--init", default=None, help="fine-tune from this checkpoint (name/path)")
        p.add_argument("--max-minutes", type=float, default=None)
        p.add_argument("--manifest", default=None, help="default: manifest.json next to --out")

    p = sub.add_parser("collect", help="record training trajectories")
    data_arg(p, "--out")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")

    p = sub.add_parser("train", help="meta-train on a trajectory store")
    data_arg(p, "--data")
    p.add_argument("--out", default=str(OURS_PATH))
    train_args(p)

    p = sub.add_parser("eval", help="k-step nowcast errors on the held-out run")
    data_arg(p, "--data")
    p.add_argument("--weights", nargs="+", default=[str(OURS_PATH), "nino_no_posw"])
    p.add_argument("--manifest", default=None, help="record the table in this manifest")

    p = sub.add_parser("all", help="collect, train, eval")
    data_arg(p, "--data")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--out", default=str(OURS_PATH))
    train_args(p)

    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.command_line = _command_line() if argv is None else " ".join(argv)
    if args.cmd == "collect":
        cmd_collect(args)
    elif args.cmd == "train":
        cmd_train(args)
    elif args.cmd == "eval":
        cmd_eval(args)
    else:
        cmd_collect(argparse.Namespace(out=args.data, preset=args.preset))
        cmd_train(args)
        manifest = args.manifest or str(Path(args.out).with_name(MANIFEST_NAME))
        weights = [args.out]
        try:
            from workers.nino.checkpoints import resolve_checkpoint

            resolve_checkpoint("nino_no_posw")
            weights.append("nino_no_posw")
        except FileNotFoundError:
            pass
        cmd_eval(argparse.Namespace(data=args.data, weights=weights, manifest=manifest))


if __name__ == "__main__":
    main()
