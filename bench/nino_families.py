"""Paired NiNo vs the plain optimizer on the new model families (issue 10, "Measure it").

Run (from the repository root; on a shared machine under the benchmark lock)::

    flock /tmp/bench.lock .venv/bin/python bench/nino_families.py --seeds 0 --resume
    flock /tmp/bench.lock .venv/bin/python bench/nino_families.py --families resnet vit --resume
    .venv/bin/python bench/nino_families.py --quick     # smoke: every family, 60 steps
    flock /tmp/bench.lock .venv/bin/python bench/nino_families.py --resume --families llama \\
        --methods nino_ft --nino-ft-weights var/nino-llama/nino_llama.pt   # a fine-tuned NiNo

Families (CPU-sized, built in this script or from a config dict):

- ``resnet``: a small ResNet (BasicBlocks 16-32-64 with BatchNorm and 1x1 downsample
  shortcuts, ~78k parameters), exported with ``torch.export`` to a ``.pt2`` and loaded back
  through ``workers.pipelines.inputs.model_builder("export", ...)``, exactly what a job
  trains for an uploaded archive (the safety check included);
- ``mobilenet``: depthwise 3x3 + pointwise 1x1 blocks with BatchNorm (~59k);
- ``vit``: a ViT with 7x7 patches on 28x28 (16 patches + a class token), d=64, 3 layers,
  4 heads (~105k);
- ``gpt2`` and ``llama``: Hugging Face causal LMs from config dicts (``workers.zoo.hf``;
  2 layers, d=64; the Llama with grouped-query attention 4/2 and SwiGLU), character-level
  on the built-in Shakespeare text, context 128.

Image families train on Fashion-MNIST (55k training images, accuracy on the full 10k test
set); the language models report the perplexity of the first ``eval_windows`` held-out
windows. Methods: ``none`` (plain AdamW), ``nino`` (published ``nino_no_posw``), ``nino_ft``
(the same NiNo settings with the meta-model of ``--nino-ft-weights``, e.g. one fine-tuned by
``workers.nino.metatrain train --init nino_no_posw`` on the family's trajectories; each run
records the file's path and sha256, and ``--resume`` runs it again when the file changed),
``wnn`` (WNN+, ``nino_mlp``), built as a train job builds them
(``workers.pipelines.train.make_accelerated_optimizer`` with the catalog accelerators).
A nowcast every ``--period`` steps on the horizon schedule of ``--max-steps``.

Paired: for a seed, every method starts from the same initial weights (torch seeded before
the model is built; a checksum is stored per run) and sees the same batches. Evaluation grid
as in ``bench/nino.py``: every ``--eval-every`` steps, a multiple of the period (a jump step)
evaluated one step later, the same grid for every method.

Targets are chosen from the plain optimizer's curve, per family, over the seeds it ran:
``end`` = the median over seeds of plain's mean of its last three evaluations (the level it
has about plateaued at), ``best`` = the median over seeds of plain's best evaluation (which
it reaches only near the end); on a curve still climbing both lie after the first jump, so
they can tell the methods apart. Steps to a target = the first grid step at or beyond it
(above for accuracy, below for perplexity); medians over seeds count "not reached" as
infinitely late. ``nowcast`` is the share of parameter elements NiNo's graph holds
(``NiNo.coverage``); the rest follow AdamW alone. ``overhead`` = time in jumps
(``NiNo.timings``) / training time without evaluations.

If NiNo refuses a family (its graph cannot read the model), the refusal sentence is the
result for that run and the benchmark goes on. The JSON (``bench/results/nino_families.json``,
``nino_families_quick.json`` with ``--quick``) is rewritten after every run; ``--resume``
keeps the finished runs of a family whose protocol is unchanged. With ``--resume`` every write
re-reads the file first and keeps the runs other invocations wrote meanwhile (only the runs
this invocation made replace stored ones), so two invocations never drop each other's runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from workers.catalog import TrainSpec  # noqa: E402
from workers.errors import ModelError  # noqa: E402
from workers.nino.optimizer import NiNo  # noqa: E402
from workers.pipelines.train import make_accelerated_optimizer  # noqa: E402
from workers.provenance import machine_info, sha256_file  # noqa: E402
from workers.training.loop import Callbacks, evaluate, train  # noqa: E402
from workers.zoo.hf import small_config  # noqa: E402

RESULTS = ROOT / "bench" / "results"
METHODS = ("none", "nino", "nino_ft", "wnn")
FAMILIES = ("resnet", "mobilenet", "vit", "gpt2", "llama")


# --- the models ------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; a strided 1x1 conv + BN shortcut when the shape
    changes (torchvision's ``downsample``)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + skip)


class SmallResNet(nn.Module):
    """A ResNet for 28x28 grey images: stem 16, stages 16-32-64 (one BasicBlock each)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _dw_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU (MobileNet v1's block)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class SmallMobileNet(nn.Module):
    """MobileNet-style: a strided 3x3 stem (14x14: depthwise convolutions are slow on a CPU
    at full resolution), four depthwise-separable blocks, global pool, linear."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            _dw_block(32, 64, 1),
            _dw_block(64, 128, 2),
            _dw_block(128, 128, 1),
            _dw_block(128, 256, 1),
        )
        self.classifier = nn.Linear(256, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        # nn.MultiheadAttention, as torchvision's ViT writes it (the parameter graph reads it;
        # attention written with scaled_dot_product_attention on computed q/k/v it refuses).
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


class SmallViT(nn.Module):
    """ViT on 28x28: 7x7 patches (a strided conv, as torchvision's ``conv_proj``), a class
    token, learned position embeddings, pre-norm blocks, the class token's head."""

    def __init__(self, dim: int = 64, depth: int = 3, heads: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.conv_proj = nn.Conv2d(1, dim, 7, 7)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, 2 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # [B, 16, dim]
        token = self.class_token.expand(x.shape[0], -1, -1)
        x = torch.cat([token, x], dim=1) + self.pos_embedding
        return self.head(self.norm(self.blocks(x))[:, 0])


def exported_resnet(folder: Path) -> nn.Module:
    """The small ResNet saved as a user's ``.pt2`` upload and loaded back as a job loads it.

    Exported in train mode with a dynamic batch dimension (training batches and evaluation
    batches differ); ``model_builder("export")`` runs the upload's safety check and makes
    ``train()``/``eval()`` switch the BatchNorm ops again.
    """
    from workers.pipelines.inputs import model_builder

    model = SmallResNet().train()
    x = torch.randn(4, 1, 28, 28)
    program = torch.export.export(
        model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=2, max=4096)},)
    )
    path = folder / "resnet.pt2"
    torch.export.save(program, path)
    return model_builder("export", path=str(path))()


# The engine's named small configs (workers.zoo.hf), shared with the "llama" trajectory preset
# NiNo is fine-tuned on.
GPT2_CONFIG: dict[str, Any] = small_config("gpt2-2x64")
LLAMA_CONFIG: dict[str, Any] = small_config("llama-2x64")


@dataclass(frozen=True)
class Family:
    """One family's model, data and optimizer settings."""

    name: str
    describe: str
    build: Callable[[Path], nn.Module]  # gets a scratch folder (for the .pt2)
    data: str  # "fashion_mnist" or "shakespeare"
    lr: float
    batch_size: int
    steps: int  # the default run length: where the plain curve has about plateaued

    @property
    def metric(self) -> str:
        return "accuracy" if self.data == "fashion_mnist" else "perplexity"


def _hf(config: dict[str, Any]) -> Callable[[Path], nn.Module]:
    def build(_: Path) -> nn.Module:
        from workers.zoo.hf import build_hf_model

        return build_hf_model(config)

    return build


# fmt: off
FAMILY: dict[str, Family] = {
    f.name: f
    for f in [
        Family("resnet", "ResNet 16-32-64, BN, 1x1 downsample, uploaded .pt2", exported_resnet,
               "fashion_mnist", 0.003, 128, 2000),  # fmt: skip
        Family("mobilenet", "MobileNet-style, depthwise 3x3 + 1x1, BN",
               lambda _: SmallMobileNet(), "fashion_mnist", 0.003, 128, 2000),  # fmt: skip
        Family("vit", "ViT patch 7, d=64, 3 layers, 4 heads (nn.MultiheadAttention), class token",
               lambda _: SmallViT(), "fashion_mnist", 0.001, 128, 2000),  # fmt: skip
        Family("gpt2", "HF GPT-2 2 layers d=64 (tied head), char-level",
               _hf(GPT2_CONFIG), "shakespeare", 0.003, 32, 2000),  # fmt: skip
        Family("llama", "HF Llama 2 layers d=64, GQA 4/2, SwiGLU 172, char-level",
               _hf(LLAMA_CONFIG), "shakespeare", 0.003, 32, 2000),  # fmt: skip
    ]
}
# fmt: on


# --- one run ---------------------------------------------------------------------------------
def eval_grid(steps: int, every: int, period: int) -> list[int]:
    """Every ``every`` steps; a multiple of ``period`` (a jump step) moves one step later."""
    grid = []
    for s in range(every, steps + 1, every):
        s = s + 1 if period > 0 and s % period == 0 else s
        if s <= steps:
            grid.append(s)
    return grid


def protocol(family: Family, args: argparse.Namespace) -> dict[str, Any]:
    """Everything that must match for a stored run of ``family`` to be kept by ``--resume``."""
    return {
        "family": family.name,
        "model": family.describe,
        "data": family.data,
        "metric": family.metric,
        "optimizer": "adamw",
        "lr": family.lr,
        "weight_decay": 0.0,
        "batch_size": family.batch_size,
        "steps": args.steps or family.steps,
        "period": args.period,
        "ctx": 5,
        "schedule_max_steps": args.max_steps or args.steps or family.steps,
        "eval_every": args.eval_every,
        "eval_windows": args.eval_windows if family.data == "shakespeare" else None,
        "eval_grid": "every eval_every steps; multiples of period moved to step + 1",
    }


def load_data(name: str) -> Any:
    """Fashion-MNIST (FM/16's splits) or the Shakespeare text, context 128."""
    if name == "fashion_mnist":
        from workers.data.datasets import fashion_mnist

        return fashion_mnist(download=False)
    from workers.data.text import fit_vocabulary, shakespeare_corpus

    return fit_vocabulary(shakespeare_corpus(context=128), GPT2_CONFIG["vocab_size"])


def run_one(family: Family, method: str, seed: int, args: argparse.Namespace, data: Any,
            scratch: Path) -> dict[str, Any]:  # fmt: skip
    """Train one method of one family for one seed; its record (JSON-ready).

    A NiNo refusal (``ModelError`` while building the optimizer) is the record's
    ``refused`` sentence instead of a curve.
    """
    steps = args.steps or family.steps
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    torch.manual_seed(seed)
    model = family.build(scratch)
    n_params = sum(p.numel() for p in model.parameters())
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    base = {"method": method, "seed": seed, "parameters": n_params,
            "initial_weights_checksum": checksum}  # fmt: skip
    # nino_ft is NiNo with other weights: the same accelerator settings, another meta-model.
    accelerator, checkpoint = method, None
    if method == "nino_ft":
        accelerator, checkpoint = "nino", str(args.nino_ft_weights)
        base["weights"] = dict(args.nino_ft)
    spec = TrainSpec(
        optimizer="adamw", lr=family.lr, weight_decay=0.0, batch_size=family.batch_size,
        steps=args.max_steps or steps, seed=seed, accelerator=accelerator, period=args.period,
    )  # fmt: skip
    t0 = time.perf_counter()
    try:
        # The data's own batch, as a train job passes it: an exported program refuses a guess.
        optimizer = make_accelerated_optimizer(
            accelerator, model, spec, device="cpu", example=data.example_batch(1),
            checkpoint=checkpoint,
        )  # fmt: skip
    except ModelError as error:
        return {**base, "refused": str(error)}
    nowcasting = isinstance(optimizer, NiNo)
    setup_s = time.perf_counter() - t0 if nowcasting else 0.0
    coverage = optimizer.coverage if nowcasting else None

    text = family.data == "shakespeare"
    max_batches = max(1, args.eval_windows // 250) if text else None
    grid = set(eval_grid(steps, args.eval_every, args.period))
    curve: list[list[float]] = []
    eval_s = [0.0]

    def on_step(step: int, loss: float) -> None:
        if step in grid:
            t = time.perf_counter()
            metrics = evaluate(model, data, batch_size=250, max_batches=max_batches)
            eval_s[0] += time.perf_counter() - t
            curve.append([step, round(metrics[family.metric], 5)])
            if args.verbose:
                print(f"    {family.name} {method} seed {seed} step {step}: "
                      f"{metrics[family.metric]:.4f}", flush=True)  # fmt: skip

    result = train(
        model, data, optimizer=optimizer, batch_size=family.batch_size, steps=steps, seed=seed,
        eval_every=0, eval_batch_size=250, eval_max_batches=max_batches,
        callbacks=Callbacks(on_step=on_step, step_every=1), device="cpu",
    )  # fmt: skip
    train_s = result.wall_time_s - result.eval_time_s - eval_s[0]
    jump_times = optimizer.timings.jump_s_each if nowcasting else []
    return {
        **base,
        "nowcast_share": (round(coverage["nowcast"] / coverage["total"], 4) if coverage else None),
        "left_to_adamw": coverage["left"] if coverage else None,
        "final_step": int(curve[-1][0]),
        "final": curve[-1][1],
        "mean_last3": round(statistics.fmean(v for _, v in curve[-3:]), 5),
        "jumps": len(jump_times),
        "jump_ms_each": [round(1000 * t, 1) for t in jump_times],
        "setup_s": round(setup_s, 3),
        "train_s_excl_eval": round(train_s, 2),
        "eval_s": round(result.eval_time_s + eval_s[0], 2),
        "steps_per_s": round(steps / train_s, 1),
        "overhead": round(sum(jump_times) / train_s, 5),
        "curve": curve,
        "load_average_at_start": load_at_start,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


# --- summary ---------------------------------------------------------------------------------
def _better(metric: str) -> Callable[[float, float], bool]:
    """Whether a value is at or beyond a target (higher accuracy, lower perplexity)."""
    return (lambda v, t: v >= t) if metric == "accuracy" else (lambda v, t: v <= t)


def _median(values: list[float | None]) -> float | None:
    if not values:
        return None
    m = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(m) else m


def family_targets(metric: str, plain: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """``end`` and ``best`` targets from the plain optimizer's curves (medians over seeds)."""
    runs = [r for r in plain.values() if "curve" in r]
    if not runs:
        return None
    end = statistics.median(r["mean_last3"] for r in runs)
    pick = max if metric == "accuracy" else min
    best = statistics.median(pick(v for _, v in r["curve"]) for r in runs)
    return {"end": round(end, 5), "best": round(best, 5)}


def summarize_family(metric: str, runs: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Targets, and per method: steps to them per seed and as medians (with the change vs
    plain over the same seeds), final metric, share nowcast, overhead; or the refusal."""
    targets = family_targets(metric, runs.get("none", {}))
    better = _better(metric)
    out: dict[str, Any] = {"metric": metric, "targets": targets, "methods": {}}
    plain = runs.get("none", {})
    for method, by_seed in runs.items():
        refused = {s: r["refused"] for s, r in by_seed.items() if "refused" in r}
        # The meta-model files of nino_ft (one, unless seeds were run with different ones).
        weights = [w for w in {json.dumps(r["weights"], sort_keys=True): r["weights"]
                               for r in by_seed.values() if "weights" in r}.values()]  # fmt: skip
        if refused:
            out["methods"][method] = {"refused": next(iter(refused.values())),
                                      "seeds": sorted(int(s) for s in by_seed)}  # fmt: skip
            if weights:
                out["methods"][method]["weights"] = weights
            continue
        seeds = sorted(by_seed, key=int)
        entry: dict[str, Any] = {"seeds": [int(s) for s in seeds], "steps_to_target": {}}
        if weights:
            entry["weights"] = weights
        for key, target in (targets or {}).items():
            per_seed = {
                s: next((st for st, v in by_seed[s]["curve"] if better(v, target)), None)
                for s in seeds
            }
            common = [s for s in seeds if s in plain and "curve" in plain[s]]
            change = None
            if method != "none" and common:
                mine = _median([per_seed[s] for s in common])
                theirs = _median(
                    [next((st for st, v in plain[s]["curve"] if better(v, target)), None)
                     for s in common]
                )  # fmt: skip
                if mine is not None and theirs:
                    change = round(mine / theirs - 1, 4)
            entry["steps_to_target"][key] = {
                "per_seed": {s: v for s, v in per_seed.items()},
                "median": _median(list(per_seed.values())),
                "change_vs_plain": change,
            }
        entry["final_median"] = statistics.median(by_seed[s]["final"] for s in seeds)
        entry["mean_last3_median"] = statistics.median(by_seed[s]["mean_last3"] for s in seeds)
        entry["best"] = (max if metric == "accuracy" else min)(
            v for s in seeds for _, v in by_seed[s]["curve"]
        )
        shares = [by_seed[s]["nowcast_share"] for s in seeds]
        entry["nowcast_share"] = shares[0]
        entry["overhead_median"] = statistics.median(by_seed[s]["overhead"] for s in seeds)
        entry["steps_per_s_median"] = statistics.median(by_seed[s]["steps_per_s"] for s in seeds)
        entry["final_step"] = by_seed[seeds[0]]["final_step"]
        out["methods"][method] = entry
    return out


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.3f}"


def print_table(summaries: dict[str, dict[str, Any]]) -> None:
    print()
    print("| family | method | seeds | target end / best | steps to end | steps to best | final"
          " | last 3 | nowcast | overhead |")  # fmt: skip
    print("|---" * 10 + "|")
    for family, summary in summaries.items():
        metric, targets = summary["metric"], summary["targets"]
        shown = (f"{_fmt(metric, targets['end'])} / {_fmt(metric, targets['best'])}"
                 if targets else "-")  # fmt: skip
        for method, e in summary["methods"].items():
            seeds = ",".join(str(s) for s in e["seeds"])
            if "refused" in e:
                print(f"| {family} | {method} | {seeds} | {shown} | refused: {e['refused']} |")
                continue
            cells = []
            for key in ("end", "best"):
                t = e["steps_to_target"].get(key)
                if t is None:
                    cells.append("-")
                    continue
                cell = "n/r" if t["median"] is None else f"{t['median']:,.0f}"
                if t["change_vs_plain"] is not None:
                    cell += f" ({100 * t['change_vs_plain']:+.0f}%)"
                cells.append(cell)
            share = "-" if e["nowcast_share"] is None else f"{100 * e['nowcast_share']:.1f}%"
            print(
                f"| {family} | {method} | {seeds} | {shown} | {cells[0]} | {cells[1]}"
                f" | {_fmt(metric, e['final_median'])} @{e['final_step']}"
                f" | {_fmt(metric, e['mean_last3_median'])} | {share}"
                f" | {100 * e['overhead_median']:.2f}% |"
            )
    for family, summary in summaries.items():
        for method, e in summary["methods"].items():
            for w in e.get("weights", []):
                print(f"{family} {method}: meta-model {w['path']} (sha256 {w['sha256'][:12]})")
    print()


def _too_late(start_before: str | None) -> bool:
    """Whether the UTC clock has passed ``start_before`` ("HH:MM", today)."""
    if start_before is None:
        return False
    hour, minute = (int(x) for x in start_before.split(":"))
    now = dt.datetime.now(dt.UTC)
    return (now.hour, now.minute) >= (hour, minute)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def merge_stored(
    doc: dict[str, Any], stored: dict[str, Any], made: set[tuple[str, str, str]]
) -> None:
    """Fold into ``doc`` what ``stored`` (the file as it is now) holds that this invocation did
    not make: another invocation's runs, families and invocation records.

    ``made`` holds the (family, method, seed) runs this invocation wrote; only those replace
    stored ones. A stored family under another protocol than ``doc``'s is not merged (this
    invocation started it again); a family ``doc`` lacks is taken whole.
    """
    for name, theirs in stored.get("families", {}).items():
        mine = doc["families"].get(name)
        if mine is None:
            doc["families"][name] = theirs
            continue
        if theirs.get("protocol") != mine.get("protocol"):
            continue
        for method, by_seed in theirs.get("runs", {}).items():
            for seed, record in by_seed.items():
                if (name, method, seed) not in made:
                    mine["runs"].setdefault(method, {})[seed] = record
        mine["runs"] = {m: mine["runs"][m] for m in METHODS if m in mine["runs"]}
        if name in FAMILY:
            mine["summary"] = summarize_family(FAMILY[name].metric, mine["runs"])
    ours = [i for i in doc.get("invocations", []) if i not in stored.get("invocations", [])]
    doc["invocations"] = [*stored.get("invocations", []), *ours]


def save(path: Path, doc: dict[str, Any], made: set[tuple[str, str, str]], resume: bool) -> None:
    """Write ``doc``; with ``resume``, after merging the file's current content into it
    (another invocation may have written since this one read it)."""
    if resume and path.is_file():
        merge_stored(doc, json.loads(path.read_text()), made)
    write_json(path, doc)


def ft_weights(path: Path) -> dict[str, str]:
    """Path (relative to the repository when inside it) and sha256 of a meta-model file."""
    resolved = path.resolve()
    shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved
    return {"path": str(shown), "sha256": sha256_file(resolved)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=["none", "nino"])
    parser.add_argument("--nino-ft-weights", type=Path, default=None, metavar="PATH",
                        help="the meta-model of --methods nino_ft (a NiNo .pt)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    parser.add_argument("--steps", type=int, default=None, help="default: each family's")
    parser.add_argument("--period", type=int, default=1000)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="horizon schedule length (default: the run's steps)")  # fmt: skip
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--eval-windows", type=int, default=1000, help="held-out LM windows")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke: seed 0, 60 steps")
    parser.add_argument("--resume", action="store_true", help="keep finished runs in --out")
    parser.add_argument("--redo", action="store_true",
                        help="with --resume: run the asked runs again though stored")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    parser.add_argument("--verbose", action="store_true", help="print every evaluation")
    parser.add_argument("--start-before", default=None, metavar="HH:MM",
                        help="start no new run at or after this UTC time (today)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds or [0]
        args.steps = args.steps or 60
        args.period, args.eval_every, args.eval_windows = 20, 10, 250
    if args.max_steps is not None and args.max_steps < args.period:
        parser.error("--max-steps must be at least --period")
    args.seeds = args.seeds if args.seeds is not None else [0, 1, 2]
    args.nino_ft = None
    if "nino_ft" in args.methods:
        if args.nino_ft_weights is None or not args.nino_ft_weights.is_file():
            parser.error("--methods nino_ft needs --nino-ft-weights naming a NiNo .pt file")
        args.nino_ft = ft_weights(args.nino_ft_weights)
    if args.out is None:
        args.out = RESULTS / ("nino_families_quick.json" if args.quick else "nino_families.json")
    torch.set_num_threads(args.threads)

    invocation = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/nino_families.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(args.threads),
    }
    if args.nino_ft is not None:
        invocation["nino_ft_weights"] = args.nino_ft
    doc: dict[str, Any] = {"benchmark": "bench/nino_families.py", "invocations": [],
                           "families": {}}  # fmt: skip
    if args.resume and args.out.is_file():
        doc = json.loads(args.out.read_text())
    doc["invocations"] = [*doc.get("invocations", []), invocation]
    for name in args.families:
        proto = protocol(FAMILY[name], args)
        kept = doc["families"].get(name)
        if kept is not None and kept.get("protocol") != proto:
            print(f"not resuming {name}: stored with another protocol", flush=True)
            kept = None
        doc["families"][name] = kept or {"protocol": proto, "runs": {}}

    data_cache: dict[str, Any] = {}
    made: set[tuple[str, str, str]] = set()
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            for name in args.families:
                family = FAMILY[name]
                entry = doc["families"][name]
                for method in args.methods:
                    kept = entry["runs"].get(method, {}).get(str(seed))
                    if (
                        kept is not None
                        and method == "nino_ft"
                        and (kept.get("weights", {}).get("sha256") != args.nino_ft["sha256"])
                    ):
                        print(f"running {name} nino_ft seed {seed} again: stored with other "
                              "weights", flush=True)  # fmt: skip
                        kept = None
                    if kept is not None and "refused" not in kept and not args.redo:
                        continue  # finished; a refusal is tried again (the graph may grow)
                    if _too_late(args.start_before):
                        print(f"not starting {name} {method} seed {seed}: past "
                              f"{args.start_before} UTC", flush=True)  # fmt: skip
                        continue
                    if family.data not in data_cache:
                        data_cache[family.data] = load_data(family.data)
                    print(f"running {name} {method} seed {seed} ...", flush=True)
                    try:
                        record = run_one(family, method, seed, args, data_cache[family.data],
                                         Path(scratch))  # fmt: skip
                    except Exception as error:  # one broken run must not end the benchmark
                        traceback.print_exc()
                        failure = f"failed: {type(error).__name__}: {error}"
                        record = {"method": method, "seed": seed, "refused": failure}
                    entry["runs"].setdefault(method, {})[str(seed)] = record
                    made.add((name, method, str(seed)))
                    if "refused" in record:
                        print(f"  refused: {record['refused']}", flush=True)
                    else:
                        print(f"  done: final {record['final']} @{record['final_step']}, "
                              f"nowcast {record['nowcast_share']}, train "
                              f"{record['train_s_excl_eval']:.0f} s", flush=True)  # fmt: skip
                    entry["runs"] = {m: entry["runs"][m] for m in METHODS if m in entry["runs"]}
                    entry["summary"] = summarize_family(family.metric, entry["runs"])
                    doc["updated"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                    save(args.out, doc, made, args.resume)
    if args.resume and args.out.is_file():
        merge_stored(doc, json.loads(args.out.read_text()), made)
    summaries = {}
    for name, entry in doc["families"].items():
        entry["summary"] = summarize_family(FAMILY[name].metric, entry["runs"])
        summaries[name] = entry["summary"]
    write_json(args.out, doc)
    print_table(summaries)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
