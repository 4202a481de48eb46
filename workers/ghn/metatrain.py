"""Meta-train our own GHN on Fashion-MNIST with DeepNets-style architectures (no official
weights are obtainable offline).

Commands (single-threaded by default; ``--threads`` changes it)::

    python -m workers.ghn.metatrain train --preset small --out workers/ghn/weights/ghn_ours.pt
    python -m workers.ghn.metatrain eval --weights workers/ghn/weights/ghn_ours.pt --split test

Each step draws a batch of Fashion-MNIST training images and a meta-batch of architectures
from the ``train`` split of :mod:`workers.ghn.deepnets`, predicts every network's parameters
with the GHN (:func:`~workers.ghn.predict.predict_tensors`, differentiable), runs the images
through each network with those parameters and back-propagates the cross-entropy (label
smoothing 0.1, as GHN-3) into the GHN; batch norm uses batch statistics, as it does when a
prediction is evaluated (:func:`calibrate_batch_norm`). AdamW with a short warm-up and cosine
decay, gradient clipping at 5. The pool of training architectures starts small and doubles
on a schedule (:func:`archs_at`): with thousands of architectures from the first step, the loss
stays at chance level for the whole of a CPU-sized run.

A CPU hour buys a few thousand network forward passes, so the presets scale the architectures
down: the ``small`` preset samples genotypes from the ``train`` split but gives them C = 8-16
channels and 4-8 cells and skips those above 60 MFLOPs per image (the published space:
C = 32-128, 4-18 cells). Evaluation also uses the held-out splits as they are (C = 48 for
``test``).

The weights file is ``{"state_dict", "config"}`` and loads with
:func:`workers.ghn.model.load_ghn`; a ``manifest.json`` beside it records the preset, the
command, the seeds, the losses and the validation accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from workers.ghn.deepnets import ArchSpec, build_network, sample_spec
from workers.ghn.evaluate import accuracy, prepare
from workers.ghn.model import GHN3, GHN3Config, load_ghn
from workers.ghn.predict import node_shapes, predict_tensors
from workers.graphs.arch.graph import ArchGraph, architecture_graph
from workers.provenance import sha256_file, software_info, write_manifest
from workers.tensors import cpu_state_dict
from workers.training.loop import calibrate_batch_norm

OURS_PATH = Path(__file__).parent / "weights" / "ghn_ours.pt"

__all__ = [
    "OURS_PATH",
    "PRESETS",
    "ArchPool",
    "accuracy",
    "MetaTrainConfig",
    "calibrate_batch_norm",
    "evaluate_predictions",
    "forward_mflops",
    "meta_train",
    "train_spec",
]


@dataclass(frozen=True)
class MetaTrainConfig:
    """One meta-training run: the GHN's size, the architectures, the optimisation.

    ``channels`` and ``cells`` rescale the ``train`` split's architectures (see
    :func:`train_spec`) and architectures above ``max_mflops`` per image are skipped (a few
    with attention on 28 x 28 maps cost 20 times the median); ``n_archs`` is how many
    distinct training architectures are drawn (seeds 0..n_archs-1). ``image_batch`` images are
    shared by the ``meta_batch`` networks of a step. Validation runs every ``val_every`` steps
    on ``val_archs`` architectures of the ``val`` split, rescaled the same way, and
    ``val_images`` validation images.
    """

    hid: int = 64
    layers: int = 3
    heads: int = 8
    max_shape: tuple[int, int, int, int] = (32, 32, 7, 7)
    channels: tuple[int, ...] = (8, 12, 16)
    cells: tuple[int, int] = (4, 8)
    max_mflops: float = 60.0
    n_archs: int = 4000
    first_archs: int = 16
    doubling: int = 150
    meta_batch: int = 4
    image_batch: int = 32
    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup: int = 50
    clip: float = 5.0
    label_smoothing: float = 0.1
    seed: int = 0
    val_every: int = 250
    val_archs: int = 8
    val_images: int = 500

    def ghn_config(self) -> GHN3Config:
        """The GHN-3 config of this run (10 classes, Fashion-MNIST)."""
        return GHN3Config(
            hid=self.hid,
            max_shape=self.max_shape,
            num_classes=10,
            heads=self.heads,
            layers=self.layers,
        )


PRESETS: dict[str, MetaTrainConfig] = {
    # A few seconds: the pipeline test.
    "tiny": MetaTrainConfig(
        hid=64,
        layers=2,
        heads=4,
        max_shape=(16, 16, 7, 7),
        channels=(8,),
        cells=(4, 5),
        max_mflops=20.0,
        n_archs=50,
        meta_batch=2,
        image_batch=32,
        steps=30,
        warmup=3,
        val_every=15,
        val_archs=2,
        val_images=200,
    ),
    # About 65 minutes on two CPU threads: the committed weights.
    "small": MetaTrainConfig(),
    # For a GPU: the published channel and cell ranges, more steps.
    "large": MetaTrainConfig(
        hid=64,
        max_shape=(64, 64, 7, 7),
        channels=tuple(range(32, 129, 8)),
        cells=(4, 18),
        max_mflops=5000.0,
        n_archs=100_000,
        meta_batch=8,
        image_batch=128,
        steps=50_000,
        lr=4e-4,
        warmup=500,
        val_every=2000,
        val_archs=32,
        val_images=2000,
    ),
}


def train_spec(
    seed: int,
    channels: Sequence[int],
    cells: tuple[int, int],
    *,
    split: str = "train",
) -> ArchSpec:
    """Architecture ``seed`` of ``split``, rescaled to a channel count and a depth drawn from
    ``channels`` and ``cells`` (seeded by ``seed`` too, so the same seed gives the same net).

    The genotype, stem, head and batch-norm choice stay those of the split's draw; the
    reduction cells move to ``n // 3`` and ``2n // 3`` of the new depth ``n``.
    """
    spec = sample_spec(split, seed)
    rng = random.Random(f"weightspace/ghn-metatrain/{split}/{seed}")
    n_cells = rng.randint(*cells)
    return dataclasses.replace(
        spec,
        channels=rng.choice(list(channels)),
        n_cells=n_cells,
        reduce_at=sorted({n_cells // 3, 2 * n_cells // 3}),
    )


@dataclass
class _Entry:
    spec: ArchSpec
    graph: ArchGraph
    shape_ind: Tensor


def forward_mflops(net: nn.Module, example: Tensor) -> float:
    """Millions of floating-point operations of one forward pass (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(example)
    return counter.get_total_flops() / 1e6 / len(example)


class ArchPool:
    """Architectures by seed with their graphs computed once (networks are rebuilt on use).

    Building a small network costs milliseconds; tracing its graph costs more, so graphs and
    shape-embedding rows are cached. ``make_spec(seed)`` gives the architecture of a seed;
    seeds whose network costs more than ``max_mflops`` per image are refused (``get`` returns
    None) and remembered.
    """

    def __init__(
        self, make_spec: Callable[[int], ArchSpec], ghn: GHN3, max_mflops: float = math.inf
    ) -> None:
        self.make_spec = make_spec
        self.ghn = ghn
        self.max_mflops = max_mflops
        self.entries: dict[int, _Entry] = {}
        self.refused: set[int] = set()

    def get(self, seed: int) -> tuple[nn.Module, ArchGraph, Tensor] | None:
        """A freshly built network of ``seed`` (default init), its graph and shape rows."""
        if seed in self.refused:
            return None
        entry = self.entries.get(seed)
        if entry is not None:
            return build_network(entry.spec), entry.graph, entry.shape_ind
        spec = self.make_spec(seed)
        net = build_network(spec)
        example = torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size)
        if forward_mflops(net, example) > self.max_mflops:
            self.refused.add(seed)
            return None
        graph = architecture_graph(net, example.expand(2, -1, -1, -1))
        shapes = node_shapes(net, graph)
        rows = [self.ghn.shape_enc.indices(s) for s in shapes]
        entry = _Entry(spec, graph, torch.tensor(rows, dtype=torch.long))
        self.entries[seed] = entry
        return net, entry.graph, entry.shape_ind

    def draw(self, rng: random.Random, n_archs: int) -> tuple[nn.Module, ArchGraph, Tensor]:
        """A random accepted architecture among seeds 0..n_archs-1."""
        for _ in range(1000):
            found = self.get(rng.randrange(n_archs))
            if found is not None:
                return found
        raise RuntimeError(f"no architecture under {self.max_mflops} MFLOPs in 1000 draws")


def evaluate_predictions(
    ghn: GHN3 | None,
    specs: Sequence[ArchSpec],
    x_calib: Tensor,
    x_eval: Tensor,
    y_eval: Tensor,
    *,
    calib_batches: int = 4,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Accuracy of each architecture with GHN-predicted parameters and no training.

    ``ghn=None`` gives the default (random) initialisation instead. BatchNorm statistics are
    calibrated on ``calib_batches`` slices of ``x_calib`` either way. Returns one dict per spec
    with the accuracy, parameter count and prediction seconds.
    """
    results = []
    for spec in specs:
        example = torch.zeros(2, spec.in_channels, spec.image_size, spec.image_size)
        prepared = prepare(
            lambda spec=spec: build_network(spec), ghn, example, x_calib.chunk(calib_batches),
            seed=seed,
        )  # fmt: skip
        net, seconds = prepared.model, prepared.seconds
        results.append(
            {
                "split": spec.split,
                "seed": spec.seed,
                "channels": spec.channels,
                "cells": spec.n_cells,
                "params": sum(p.numel() for p in net.parameters()),
                "accuracy": accuracy(net, x_eval, y_eval),
                "predict_seconds": round(seconds, 3),
            }
        )
    return results


def archs_at(step: int, config: MetaTrainConfig) -> int:
    """Size of the architecture pool at ``step`` (the curriculum of ``MetaTrainConfig``)."""
    if config.doubling <= 0:
        return config.n_archs
    return min(config.n_archs, config.first_archs * 2 ** (step // config.doubling))


def _cosine(step: int, config: MetaTrainConfig) -> float:
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def meta_train(
    config: MetaTrainConfig,
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    *,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
    init: GHN3 | None = None,
    on_validate: Callable[[GHN3, dict[str, Any]], None] | None = None,
) -> tuple[GHN3, dict[str, Any]]:
    """Meta-train a GHN; returns it and a history (losses, validation accuracies, timing).

    ``x_train``/``y_train`` are images [N, 1, 28, 28] and labels; validation accuracy of the
    predictions is measured on ``val_archs`` rescaled ``val`` architectures with the first
    ``val_images`` of ``x_val``. ``on_validate(ghn, history)`` runs after every validation
    (the command saves the GHN there, so a long run leaves a usable file at every stage).
    """
    torch.manual_seed(config.seed)
    ghn = init if init is not None else GHN3(config.ghn_config())
    ghn.train()
    optimizer = torch.optim.AdamW(ghn.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _cosine(s, config))
    pool = ArchPool(lambda s: train_spec(s, config.channels, config.cells), ghn, config.max_mflops)
    val_pool = ArchPool(
        lambda s: train_spec(s, config.channels, config.cells, split="val"), ghn, config.max_mflops
    )
    val_specs = []
    for seed in range(10 * config.val_archs):
        if len(val_specs) < config.val_archs and val_pool.get(seed) is not None:
            val_specs.append(val_pool.entries[seed].spec)
    rng = random.Random(config.seed)
    images = torch.Generator().manual_seed(config.seed)
    history: dict[str, Any] = {"loss": [], "val": []}
    start = time.perf_counter()
    window: list[float] = []

    def validate(step: int) -> None:
        ghn.eval()
        results = evaluate_predictions(
            ghn, val_specs, x_train[:512], x_val[: config.val_images], y_val[: config.val_images]
        )
        ghn.train()
        mean = statistics.fmean(r["accuracy"] for r in results)
        history["val"].append({"step": step, "accuracy": round(mean, 4)})
        log(f"step {step}: validation accuracy {mean:.1%} ({time.perf_counter() - start:.0f} s)")
        if on_validate is not None:
            on_validate(ghn, history)

    for step in range(config.steps):
        idx = torch.randint(len(y_train), (config.image_batch,), generator=images)
        x, y = x_train[idx], y_train[idx]
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(config.meta_batch):
            net, graph, shape_ind = pool.draw(rng, archs_at(step, config))
            net.requires_grad_(False)
            net.train()
            tensors, _ = predict_tensors(ghn, net, graph, shape_ind=shape_ind)
            logits = functional_call(net, tensors, (x,), strict=False)
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            (loss / config.meta_batch).backward()
            total += loss.item() / config.meta_batch
        if not math.isfinite(total):
            raise FloatingPointError(f"meta-training diverged at step {step} (loss {total})")
        nn.utils.clip_grad_norm_(ghn.parameters(), config.clip)
        optimizer.step()
        scheduler.step()
        history["loss"].append(round(total, 4))
        window.append(total)
        if (step + 1) % 10 == 0 or step + 1 == config.steps:
            log(
                f"step {step + 1}/{config.steps}: loss {statistics.fmean(window):.3f} "
                f"lr {scheduler.get_last_lr()[0]:.2e} ({time.perf_counter() - start:.0f} s)"
            )
            window = []
        if config.val_every and ((step + 1) % config.val_every == 0 or step + 1 == config.steps):
            validate(step + 1)
    history["seconds"] = round(time.perf_counter() - start, 1)
    history["distinct_archs_seen"] = len(pool.entries)
    history["archs_refused"] = len(pool.refused)
    ghn.eval()
    return ghn, history


def save_ghn(ghn: GHN3, path: Path) -> None:
    """Write ``{"state_dict", "config"}`` (weights only, loadable by ``load_ghn``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": cpu_state_dict(ghn), "config": ghn.config.to_dict()}, path)


def _fashion_mnist() -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    from workers.data.datasets import fashion_mnist

    data = fashion_mnist()
    assert data.x_val is not None and data.y_val is not None
    return data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test


def _cmd_train(args: argparse.Namespace) -> None:
    config = PRESETS[args.preset]
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    config = dataclasses.replace(config, seed=args.seed)
    x_train, y_train, x_val, y_val, _, _ = _fashion_mnist()
    out = Path(args.out)
    started = time.perf_counter()

    def write(ghn: GHN3, history: dict[str, Any]) -> None:
        history.setdefault("seconds", round(time.perf_counter() - started, 1))
        save_ghn(ghn, out)
        _write_manifest(args, config, ghn, history, out)

    ghn, history = meta_train(
        config, x_train, y_train, x_val, y_val, on_validate=lambda g, h: write(g, dict(h))
    )
    write(ghn, history)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and its manifest")


def _write_manifest(
    args: argparse.Namespace,
    config: MetaTrainConfig,
    ghn: GHN3,
    history: dict[str, Any],
    out: Path,
) -> None:
    losses = history["loss"]
    manifest = {
        "format": "weightspace.ghn-manifest/1",
        "command": "python -m workers.ghn.metatrain " + shlex.join(sys.argv[1:]),
        "preset": args.preset,
        "config": asdict(config),
        "data": "Fashion-MNIST, first 55,000 training images; validation: the last 5,000",
        "architectures": f"train split seeds 0..{config.n_archs - 1}, rescaled (train_spec)",
        "steps": config.steps,
        "first_loss": round(statistics.fmean(losses[:20]), 4),
        "final_loss": round(statistics.fmean(losses[-20:]), 4),
        "validation": history["val"],
        "steps_done": len(losses),
        "distinct_archs_seen": history.get("distinct_archs_seen"),
        "archs_refused_for_cost": history.get("archs_refused"),
        "seconds": history["seconds"],
        **software_info(),  # torch, python, threads
        "parameters": sum(p.numel() for p in ghn.parameters()),
        "sha256": sha256_file(out),
    }
    write_manifest(out.parent / "manifest.json", manifest, indent=2)


def _cmd_eval(args: argparse.Namespace) -> None:
    ghn = load_ghn(args.weights).eval() if args.weights != "random" else None
    x_train, _, _, _, x_test, y_test = _fashion_mnist()
    specs = [sample_spec(args.split, s) for s in range(args.archs)]
    results = evaluate_predictions(
        ghn, specs, x_train[:512], x_test[: args.images], y_test[: args.images]
    )
    for r in results:
        print(
            f"{r['split']} {r['seed']:>3}  C={r['channels']:<3} cells={r['cells']:<3} "
            f"{r['params']:>10,}  {r['accuracy']:.1%}  {r['predict_seconds']:.2f} s"
        )
    accs = [r["accuracy"] for r in results]
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"mean {statistics.fmean(accs):.1%} ± {spread:.1%} over {len(accs)} architectures")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workers.ghn.metatrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="meta-train a GHN and write it with a manifest")
    train.add_argument("--preset", choices=sorted(PRESETS), default="small")
    train.add_argument("--out", default=str(OURS_PATH))
    train.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    train.add_argument("--seed", type=int, default=0)
    evaluate = sub.add_parser("eval", help="accuracy of predictions with no training")
    evaluate.add_argument("--weights", default=str(OURS_PATH), help="a GHN file or 'random'")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--archs", type=int, default=10)
    evaluate.add_argument("--images", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"train": _cmd_train, "eval": _cmd_eval}[args.command](args)


if __name__ == "__main__":
    main()
