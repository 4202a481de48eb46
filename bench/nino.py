"""NiNo benchmark on FM/16: steps to a test accuracy target, Adam vs nowcasting.

Run (from the repository root)::

    .venv/bin/python bench/nino.py                      # 3 seeds x 4 methods x 10k steps
    .venv/bin/python bench/nino.py --quick              # smoke: seed 0, 2,000 steps
    .venv/bin/python bench/nino.py --seeds 0 --methods adam nino --resume
    .venv/bin/python bench/nino.py --ours path/to/nino_ours.pt --out /tmp/nino.json

The task is NiNo's published FM/16: Fashion-MNIST (first 55k training images, full 10k test
set), the zoo's ``cnn`` (16-32-32, 14,378 parameters), AdamW lr 0.006, weight decay 0, batch
128, 10k steps, a nowcast every ``period`` = 1000 steps on the published horizon schedule for
10k steps (``--max-steps``; kept at 10k in ``--quick`` so that a quick run is the exact prefix
of a full one). Methods:

- ``adam``: plain AdamW;
- ``nino``: AdamW + NiNo with the published ``nino_no_posw.pt``;
- ``wnn``: AdamW + WNN+ (the published ``nino_mlp.pt``, no message passing);
- ``ours``: AdamW + NiNo with our own weights (``--ours``; skipped, with a note in the JSON,
  when the file does not exist).

Runs are paired: for a seed, every method starts from the same initial weights (torch seeded
before the model is built; a checksum of them is stored per run) and sees the same batches
(``fashion_mnist().train_batches`` reshuffles with seed + epoch).

Optimizers are built as a train job builds them (``workers.pipelines.train.
make_accelerated_optimizer`` with the accelerators of ``workers.catalog``; ``adam`` is the
catalog's ``none``); ``--ours`` is passed to it as the ``ours`` accelerator's meta-model.

Evaluation grid: test accuracy on the full 10k test set every ``--eval-every`` (100) steps,
except that a step which is a multiple of ``period`` (1000, 2000, ...: the step of a jump for
the nowcasting methods) is evaluated one step later (1001, 2001, ...), because accuracy
collapses on the jump step itself and recovers within ~10 steps (docs/NINO.md). Every method,
Adam included, uses the same grid. With 10k steps the last grid point is 9,900 (10,001 is past
the end); the loop's own evaluation at the last step is stored as ``accuracy_at_last_step``
(for the nowcasting methods that is right after the k=1 jump).

Reading the output: the table gives, per method, the median over seeds of the first grid step
at or above 88.0%, 88.5% and 89.5%, and in brackets its reduction vs Adam's median over the
same seeds (``-45%`` = 45% fewer steps); ``n/r`` = not reached within the steps (a median
over seeds counts a seed that did not reach it as infinitely late); ``(<=-52%)`` means Adam's
median was not reached, so the reduction is at least 1 - median / steps. ``final`` is the
accuracy at the last grid point and ``last 5`` the mean of the last five grid points (medians
over seeds; accuracy moves ~0.4% from one evaluation to the next on the plateau).
``overhead`` is the time spent in jumps (``NiNo.timings``: nowcast + writing the weights) as
a fraction of training time excluding every evaluation; ``jump`` is the median time of one
jump; ``setup`` is building the optimizer: loading the checkpoint and building the graph once
(0 for Adam); steps/s
counts training steps per second of training time (evaluations excluded).
A second table lists every seed. The JSON (``bench/results/nino.json``, or
``nino_quick.json`` with ``--quick``) holds the same numbers, every run's accuracy curve and
timings, machine information and the date; it is rewritten after every run, and
``--resume`` keeps the runs already in it (same protocol) and only does the missing ones.

Wall times are only comparable within one run of this script on one machine; on a shared
machine compare ratios (overhead), not seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from workers.catalog import ACCELERATORS, TrainSpec  # noqa: E402
from workers.data.datasets import fashion_mnist  # noqa: E402
from workers.nino.checkpoints import OURS_PATH  # noqa: E402
from workers.nino.optimizer import NiNo  # noqa: E402
from workers.pipelines.train import make_accelerated_optimizer  # noqa: E402
from workers.provenance import machine_info, sha256_file  # noqa: E402
from workers.training.loop import Callbacks, evaluate, train  # noqa: E402
from workers.zoo.build import build_model  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_OURS = OURS_PATH
METHODS = ("adam", "nino", "wnn", "ours")
# The catalog accelerator each method is (the catalog calls plain AdamW "none").
ACCELERATOR_OF = {"adam": "none", "nino": "nino", "wnn": "wnn", "ours": "ours"}
# Meta-model each method loads, as recorded per run (None: plain AdamW); "ours" is filled in
# from --ours.
CHECKPOINTS: dict[str, str | None] = {
    m: ACCELERATORS[a].checkpoint for m, a in ACCELERATOR_OF.items() if m != "ours"
}
TARGETS = (0.880, 0.885, 0.895)
PUBLISHED = {"target": 0.895, "adam": 8606, "nino": 4582}  # docs/NINO.md, FM/16


def eval_grid(steps: int, every: int, period: int) -> list[int]:
    """Every ``every`` steps; a multiple of ``period`` (a jump step) moves one step later."""
    grid = []
    for s in range(every, steps + 1, every):
        s = s + 1 if period > 0 and s % period == 0 else s
        if s <= steps:
            grid.append(s)
    return grid


def protocol(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that must match for a stored run to be reused by ``--resume``."""
    return {
        "task": "FM/16",
        "model": "cnn",
        "optimizer": "adamw",
        "lr": 0.006,
        "weight_decay": 0.0,
        "batch_size": 128,
        "steps": args.steps,
        "period": args.period,
        "ctx": 5,
        "schedule_max_steps": args.max_steps,
        "eval_every": args.eval_every,
        "eval_grid": "every eval_every steps; multiples of period moved to step + 1",
        "targets": list(TARGETS),
    }


def train_spec(method: str, seed: int, args: argparse.Namespace) -> TrainSpec:
    """The train-job spec of a method's run (the protocol: AdamW, lr 0.006, no decay)."""
    # ``steps`` is the length of the horizon schedule (``--max-steps``), not of the run:
    # make_accelerated_optimizer schedules the horizons over ``spec.steps``, and a quick run
    # must be the prefix of a full one. The loop gets the run's length (``args.steps``).
    return TrainSpec(
        optimizer="adamw",
        lr=0.006,
        weight_decay=0.0,
        batch_size=128,
        steps=args.max_steps,
        seed=seed,
        accelerator=ACCELERATOR_OF[method],
        period=args.period,
    )


def make_bench_optimizer(method: str, checkpoint: str | None, model: torch.nn.Module,
                         spec: TrainSpec) -> Any:  # fmt: skip
    """The method's optimizer for ``model``, built as a train job builds it.

    ``--ours`` replaces the catalog ``ours`` accelerator's meta-model (the committed
    ``nino_ours.pt`` by default).
    """
    custom = method == "ours" and checkpoint is not None
    return make_accelerated_optimizer(
        spec.accelerator, model, spec, device="cpu", checkpoint=checkpoint if custom else None
    )


def run_one(method: str, checkpoint: str | None, seed: int, args: argparse.Namespace,
            data: Any) -> dict[str, Any]:  # fmt: skip
    """Train one method for one seed; return its record (JSON-ready)."""
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    torch.manual_seed(seed)
    model = build_model("cnn")
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    t0 = time.perf_counter()
    optimizer = make_bench_optimizer(method, checkpoint, model, train_spec(method, seed, args))
    nowcasting = isinstance(optimizer, NiNo)
    setup_s = time.perf_counter() - t0 if nowcasting else 0.0

    grid = set(eval_grid(args.steps, args.eval_every, args.period))
    curve: list[list[float]] = []
    eval_s = [0.0]

    def on_step(step: int, loss: float) -> None:
        # Called after every step with a backward pass (never on a jump step).
        if step in grid:
            t = time.perf_counter()
            acc = evaluate(model, data)["accuracy"]
            eval_s[0] += time.perf_counter() - t
            curve.append([step, round(acc, 5)])
            if args.verbose:
                print(f"    {method} seed {seed} step {step}: {acc:.4f}", flush=True)

    result = train(
        model,
        data,
        optimizer=optimizer,
        batch_size=128,
        steps=args.steps,
        seed=seed,
        eval_every=0,  # evaluations come from on_step, on the grid above
        callbacks=Callbacks(on_step=on_step, step_every=1),
        device="cpu",
    )
    train_s = result.wall_time_s - result.eval_time_s - eval_s[0]
    jump_times = optimizer.timings.jump_s_each if nowcasting else []
    timing = {
        "jump_s": sum(jump_times),
        "snapshot_s": optimizer.timings.snapshot_s if nowcasting else 0.0,
        "setup_s": setup_s,
        "jumps": len(jump_times),
    }
    reached: dict[str, int | None] = {}
    for target in TARGETS:
        hit = next((s for s, a in curve if a >= target), None)
        reached[f"{target:.3f}"] = None if hit is None else int(hit)
    missing = sorted(grid - {int(s) for s, _ in curve})
    if missing:  # would mean a grid step was a jump step or was skipped
        raise RuntimeError(f"{method} seed {seed}: no evaluation at steps {missing[:5]}")
    return {
        "method": method,
        "seed": seed,
        "checkpoint": _relative(checkpoint),
        "checkpoint_sha256": _checkpoint_sha256(checkpoint),
        "initial_weights_checksum": checksum,
        "steps_to_target": reached,
        "final_step": int(curve[-1][0]),
        "final_accuracy": curve[-1][1],
        "final_accuracy_mean_last5": _last5({"curve": curve}),
        "best_accuracy": max(a for _, a in curve),
        "accuracy_at_last_step": round(result.final_metrics["accuracy"], 5),
        "jumps": timing["jumps"],
        "jump_s": round(timing["jump_s"], 4),
        "jump_ms_each": [round(1000 * t, 1) for t in jump_times],
        "snapshot_s": round(timing["snapshot_s"], 4),
        "setup_s": round(timing["setup_s"], 3),
        "train_s_excl_eval": round(train_s, 2),
        "eval_s": round(result.eval_time_s + eval_s[0], 2),
        "wall_s": round(result.wall_time_s, 2),
        "steps_per_s": round(args.steps / train_s, 1),
        "overhead": round(timing["jump_s"] / train_s, 5),
        "curve": curve,
        "load_average_at_start": load_at_start,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _relative(checkpoint: str | None) -> str | None:
    """A checkpoint path relative to the repository when inside it (names stay names)."""
    if checkpoint is None or not Path(checkpoint).is_absolute():
        return checkpoint
    try:
        return str(Path(checkpoint).relative_to(ROOT))
    except ValueError:
        return checkpoint


def _checkpoint_sha256(checkpoint: str | None) -> str | None:
    """sha256 of a checkpoint given by path (published names are checked on load)."""
    if checkpoint is None or not Path(checkpoint).is_file():
        return None
    return sha256_file(checkpoint)


def _last5(record: dict[str, Any]) -> float:
    """Mean test accuracy over the last 5 grid evaluations of a run."""
    return round(statistics.fmean(a for _, a in record["curve"][-5:]), 5)


def _median(values: list[int | None]) -> float | None:
    if not values:
        return None
    m = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(m) else m


def summarize(runs: dict[str, dict[str, dict[str, Any]]], steps: int) -> dict[str, Any]:
    """Per method: per-seed steps, medians, reductions vs Adam (same seeds), final, overhead.

    When the method's median is reached but Adam's is not (within ``steps``), the reduction is
    only bounded: ``reduction_at_least`` = 1 - median / ``steps``.
    """
    summary: dict[str, Any] = {}
    adam = runs.get("adam", {})
    for method, by_seed in runs.items():
        if not by_seed:
            continue
        seeds = sorted(by_seed, key=int)
        common = [s for s in seeds if s in adam]
        entry: dict[str, Any] = {"seeds": [int(s) for s in seeds], "targets": {}}
        for target in TARGETS:
            key = f"{target:.3f}"
            per_seed = [by_seed[s]["steps_to_target"][key] for s in seeds]
            median = _median(per_seed)
            reduction = at_least = None
            if method != "adam" and common:
                mine = _median([by_seed[s]["steps_to_target"][key] for s in common])
                base = _median([adam[s]["steps_to_target"][key] for s in common])
                if mine is not None and base is not None:
                    reduction = round(1 - mine / base, 4)
                elif mine is not None:
                    at_least = round(1 - mine / steps, 4)
            entry["targets"][key] = {
                "per_seed": {
                    s: ("not reached" if v is None else v)
                    for s, v in zip(seeds, per_seed, strict=True)
                },
                "median": "not reached" if median is None else median,
                "reduction_vs_adam": reduction,
                "reduction_at_least": at_least,
                "reduction_seeds": [int(s) for s in common] if method != "adam" else None,
            }
        entry["final_accuracy_median"] = statistics.median(
            by_seed[s]["final_accuracy"] for s in seeds
        )
        entry["final_step"] = by_seed[seeds[0]]["final_step"]
        # Less noisy than one point (accuracy moves ~0.4% step to step on the plateau).
        entry["final_accuracy_mean_last5_median"] = statistics.median(
            _last5(by_seed[s]) for s in seeds
        )
        entry["overhead_median"] = statistics.median(by_seed[s]["overhead"] for s in seeds)
        entry["jump_ms_median"] = statistics.median(
            [t for s in seeds for t in by_seed[s]["jump_ms_each"]] or [0.0]
        )
        entry["setup_s_median"] = statistics.median(by_seed[s]["setup_s"] for s in seeds)
        entry["steps_per_s_median"] = statistics.median(by_seed[s]["steps_per_s"] for s in seeds)
        summary[method] = entry
    return summary


def _cell(value: Any) -> str:
    return "n/r" if value in (None, "not reached") else f"{value:,.0f}"


def print_tables(summary: dict[str, Any], runs: dict[str, dict[str, dict[str, Any]]]) -> None:
    heads = [f">={100 * t:.1f}%" for t in TARGETS]
    print()
    print("| method | seeds | " + " | ".join(heads) + " | final | last 5 | overhead | jump (ms)"
          " | setup (s) | steps/s |")  # fmt: skip
    print("|---" * (len(heads) + 8) + "|")
    for method, entry in summary.items():
        cells = []
        for target in TARGETS:
            t = entry["targets"][f"{target:.3f}"]
            cell = _cell(t["median"])
            if t["reduction_vs_adam"] is not None:
                cell += f" ({-100 * t['reduction_vs_adam']:+.0f}%)"
            elif t.get("reduction_at_least") is not None:
                cell += f" (<={-100 * t['reduction_at_least']:+.0f}%)"
            cells.append(cell)
        seeds = ",".join(str(s) for s in entry["seeds"])
        print(
            f"| {method} | {seeds} | " + " | ".join(cells)
            + f" | {100 * entry['final_accuracy_median']:.2f}% @{entry['final_step']}"
            + f" | {100 * entry['final_accuracy_mean_last5_median']:.2f}%"
            + f" | {100 * entry['overhead_median']:.2f}% | {entry['jump_ms_median']:.0f}"
            + f" | {entry['setup_s_median']:.2f} | {entry['steps_per_s_median']:.0f} |"
        )  # fmt: skip
    print()
    print("| method | seed | " + " | ".join(heads) + " | final | last 5 | best | jumps"
          " | train (s) |")  # fmt: skip
    print("|---" * (len(heads) + 7) + "|")
    for method, by_seed in runs.items():
        for seed in sorted(by_seed, key=int):
            r = by_seed[seed]
            cells = [_cell(r["steps_to_target"][f"{t:.3f}"]) for t in TARGETS]
            print(
                f"| {method} | {seed} | " + " | ".join(cells)
                + f" | {100 * r['final_accuracy']:.2f}% | {100 * _last5(r):.2f}%"
                + f" | {100 * r['best_accuracy']:.2f}%"
                + f" | {r['jumps']} | {r['train_s_excl_eval']:.0f} |"
            )  # fmt: skip
    print()


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    parser.add_argument("--steps", type=int, default=None, help="default 10000 (quick: 2000)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--ours", type=Path, default=DEFAULT_OURS, help="our NiNo weights")
    parser.add_argument("--period", type=int, default=1000)
    parser.add_argument("--max-steps", type=int, default=10_000, help="horizon schedule length")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="seed 0, 2,000 steps")
    parser.add_argument("--resume", action="store_true", help="keep finished runs in --out")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    parser.add_argument("--verbose", action="store_true", help="print every evaluation")
    args = parser.parse_args(argv)
    if args.max_steps < args.period:
        # The library schedules horizons over max(steps, period); below that the schedule
        # would silently differ from the one asked for.
        parser.error("--max-steps must be at least --period")
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    if args.steps is None:
        args.steps = 2000 if args.quick else 10_000
    if args.out is None:
        args.out = RESULTS / ("nino_quick.json" if args.quick else "nino.json")
    torch.set_num_threads(args.threads)

    checkpoints = dict(CHECKPOINTS)
    notes: dict[str, str] = {}
    if "ours" in args.methods:
        if args.ours.is_file():
            checkpoints["ours"] = str(args.ours)
        else:
            notes["ours"] = f"skipped: {_relative(str(args.ours))} does not exist"
            print(f"note: {notes['ours']}", flush=True)
    methods = [m for m in args.methods if m in checkpoints]

    proto = protocol(args)
    invocation = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/nino.py", *sys.argv[1:]]),
        "machine": machine_info(args.threads),
    }
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    invocations = [invocation]
    if args.resume and args.out.is_file():
        old = json.loads(args.out.read_text())
        if old.get("protocol") == proto:
            runs = old.get("runs", {})
            earlier = old.get("invocations") or [
                {k: old.get(k) for k in ("date", "command", "machine")}  # older files
            ]
            invocations = earlier + invocations
            print(f"resuming: {sum(len(v) for v in runs.values())} runs kept from {args.out}")
        else:
            print(f"not resuming: {args.out} was made with another protocol", flush=True)

    doc: dict[str, Any] = {
        "benchmark": "bench/nino.py",
        # The first invocation's; every invocation (--resume) is listed in "invocations".
        "date": invocations[0]["date"],
        "machine": invocations[0]["machine"],
        "invocations": invocations,
        "protocol": proto,
        "published_fm16": PUBLISHED,
        "notes": notes,
        "runs": runs,
    }
    data = fashion_mnist(download=False)
    for seed in args.seeds:
        for method in methods:
            if str(seed) in runs.get(method, {}):
                continue
            print(f"running {method} seed {seed} ({args.steps} steps) ...", flush=True)
            record = run_one(method, checkpoints[method], seed, args, data)
            runs.setdefault(method, {})[str(seed)] = record
            t = record["steps_to_target"]
            print(
                f"  done in {record['wall_s']:.0f} s: steps to target {t}, final "
                f"{record['final_accuracy']:.4f} @{record['final_step']}, "
                f"overhead {100 * record['overhead']:.2f}%",
                flush=True,
            )
            # Keep method order stable in the file whatever order runs finished in.
            ordered = {m: runs[m] for m in METHODS if m in runs}
            doc["runs"] = ordered
            doc["summary"] = summarize(ordered, args.steps)
            doc["updated"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            write_json(args.out, doc)
    ordered = {m: runs[m] for m in METHODS if m in runs}
    doc["runs"], doc["summary"] = ordered, summarize(ordered, args.steps)
    write_json(args.out, doc)
    print_tables(doc["summary"], ordered)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
