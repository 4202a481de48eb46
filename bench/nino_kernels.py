"""How to give NiNo kernels above 3x3: ``.venv/bin/python bench/nino_kernels.py``.

The published checkpoints read 9 kernel positions per edge. Three mappings for a 5x5 or 7x7
kernel are compared on the same nowcast:

- ``edges``: ``ceil(k*k / 9)`` parallel edges between the same two neurons, 9 positions each
  in row-major kernel order (``workers.graphs.params.traced.LARGE_KERNELS = "edges"``);
- ``base``: those tensors are left to the base optimizer (unchanged by the jump, the rest
  nowcast; ``LARGE_KERNELS = "base"``);
- ``resample``: each k x k kernel is average-pooled to 3x3, nowcast on a twin model with 3x3
  convolutions, and the predicted change is upsampled back (bilinear) onto the k x k kernel.

Task: Fashion-MNIST, a CNN with a strided k x k stem, a k x k conv, a 3x3 conv, global pool
and a linear head (k = 5, 7); AdamW lr 0.006, batch 128, as FM/16. For each seed one AdamW
run of ``period`` (1000) steps keeps NiNo's five context snapshots; at its first jump step
every mapping nowcasts from that same context with the published ``nino_no_posw`` (horizon of
the published schedule for 10k steps), then AdamW continues on the same batches for every mapping,
and the test loss and accuracy are measured 1 and 25 steps after the jump (the published
post-jump dip recovers within ~10 steps). k = 3 (no mapping needed: all four coincide but
``adam``) calibrates what a jump does on this task. ``adam`` is the same
run taking that step without a jump. Writes ``bench/results/nino_kernels.json`` and prints
the medians over seeds. Run under ``flock /tmp/bench.lock`` on shared machines.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from workers.data.datasets import fashion_mnist  # noqa: E402
from workers.graphs.params import traced  # noqa: E402
from workers.nino import load_model  # noqa: E402
from workers.nino.optimizer import NiNo, NowcastConfig  # noqa: E402
from workers.nino.scaling import horizon_at  # noqa: E402
from workers.training.loop import evaluate  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "nino_kernels.json"
METHODS = ("adam", "edges", "base", "resample")
RECOVERY = (1, 25)  # AdamW steps after the jump at which the test set is evaluated


class KernelCNN(nn.Module):
    """k x k strided stem, k x k conv, 3x3 conv, pool, linear head (16-32-32 channels)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, k, stride=2, padding=k // 2)
        self.mid = nn.Conv2d(16, 32, k, padding=k // 2)
        self.last = nn.Conv2d(32, 32, 3, padding=1)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.last(torch.relu(self.mid(torch.relu(self.stem(x))))))
        return self.head(x.mean((2, 3)))


def _nowcast(model: nn.Module, meta: Any, history: list[dict[str, torch.Tensor]], k: int,
             mode: str) -> dict[str, torch.Tensor]:  # fmt: skip
    traced.LARGE_KERNELS = mode
    try:
        nino = NiNo(torch.optim.AdamW(model.parameters()), model, meta, NowcastConfig())
    finally:
        traced.LARGE_KERNELS = "edges"
    states = [{n: s[n] for n in nino.names} for s in history]
    return nino.nowcast(states, k)


def _resampled(model: KernelCNN, meta: Any, history: list[dict[str, torch.Tensor]],
               k: int) -> dict[str, torch.Tensor]:  # fmt: skip
    twin = KernelCNN(3)
    large = [n for n, p in model.named_parameters() if p.dim() == 4 and p.shape[-1] > 3]

    def down(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: nn.functional.adaptive_avg_pool2d(t, 3) if n in large else t
                for n, t in state.items()}  # fmt: skip

    small = [down(s) for s in history]
    predicted = _nowcast(twin, meta, small, k, "edges")
    out = dict(predicted)
    for n in large:
        delta = predicted[n] - small[-1][n]
        size = history[-1][n].shape[-1]
        up = nn.functional.interpolate(delta, size=(size, size), mode="bilinear",
                                       align_corners=True)  # fmt: skip
        out[n] = history[-1][n] + up
    return out


def run_seed(k: int, seed: int, data: Any, meta: Any, period: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = KernelCNN(k)
    opt = torch.optim.AdamW(model.parameters(), lr=0.006, weight_decay=0.0)
    spacing = period // 5
    history: list[dict[str, torch.Tensor]] = []
    batches = iter(())
    epoch = 0
    step = 0

    def next_batch() -> Any:
        nonlocal batches, epoch
        try:
            return next(batches)
        except StopIteration:
            batches = iter(data.train_batches(128, seed, epoch))
            epoch += 1
            return next(batches)

    start = time.perf_counter()
    while step < period - 1:
        if (step + 1) % spacing == 0:  # NiNo's snapshot times (before that step's update)
            history.append({n: p.detach().clone() for n, p in model.named_parameters()})
        x, y = next_batch()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        step += 1
    history.append({n: p.detach().clone() for n, p in model.named_parameters()})
    history = history[-5:]
    horizon = horizon_at(period - 1, 10_000, period)
    after = [next_batch() for _ in range(max(RECOVERY))]
    row: dict[str, Any] = {"k": k, "seed": seed, "horizon": horizon,
                           "train_s": round(time.perf_counter() - start, 1)}  # fmt: skip
    for method in METHODS:
        trial = copy.deepcopy(model)
        trial_opt = torch.optim.AdamW(trial.parameters(), lr=0.006, weight_decay=0.0)
        # A deep copy: load_state_dict keeps the moment tensors, which the trials would share.
        trial_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        if method != "adam":
            if method == "resample":
                predicted = _resampled(trial, meta, history, horizon)
            else:
                predicted = _nowcast(trial, meta, history, horizon, method)
            with torch.no_grad():
                for n, p in trial.named_parameters():
                    if n in predicted:
                        p.copy_(predicted[n])
        row[method] = {}
        for i, (x, y) in enumerate(after, start=1):
            trial_opt.zero_grad()
            nn.functional.cross_entropy(trial(x), y).backward()
            trial_opt.step()
            if i in RECOVERY:
                metrics = evaluate(trial, data)
                row[method][f"loss@{i}"] = round(metrics["loss"], 4)
                row[method][f"accuracy@{i}"] = round(metrics["accuracy"], 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--period", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = fashion_mnist(download=False)
    meta = load_model("nino_no_posw")
    rows = [run_seed(k, s, data, meta, args.period) for k in args.kernels for s in args.seeds]
    summary: dict[str, Any] = {}
    keys = [f"{what}@{i}" for i in RECOVERY for what in ("loss", "accuracy")]
    print(f"{'k':>2s} {'after':>5s} " + " ".join(f"{m + ' loss/acc':>20s}" for m in METHODS))
    for k in args.kernels:
        mine = [r for r in rows if r["k"] == k]
        summary[str(k)] = {
            m: {key: statistics.median(r[m][key] for r in mine) for key in keys} for m in METHODS
        }
        for i in RECOVERY:
            cells = " ".join(
                f"{summary[str(k)][m][f'loss@{i}']:10.4f}/{summary[str(k)][m][f'accuracy@{i}']:8.2%}"
                for m in METHODS
            )
            print(f"{k:2d} {i:5d} {cells}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "description": __doc__.split("\n\n")[1:3],
        "period": args.period, "seeds": args.seeds, "median": summary, "rows": rows,
    }, indent=1) + "\n", encoding="utf-8")  # fmt: skip
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
