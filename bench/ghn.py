"""GHN benchmark on Fashion-MNIST: accuracy with predicted parameters and no training,
fine-tuning from the prediction, and prediction time.

Run (from the repository root)::

    .venv/bin/python bench/ghn.py                        # everything, one thread
    .venv/bin/python bench/ghn.py --quick                # smoke: few nets, few images
    .venv/bin/python bench/ghn.py --ghn path/to/ghn.pt --out /tmp/ghn.json

Sections:

1. **No training.** For each split, held-out DeepNets architectures (``--archs`` at the
   small scale, ``--full-archs`` at the published one) are built twice: with our GHN's
   prediction and with PyTorch's default initialisation. Before evaluation both get their
   BatchNorm statistics measured on 512 training images (a prediction carries no running
   statistics; parameters are not touched), then accuracy is measured on the first
   ``--images`` test images. Splits: ``test`` (the published evaluation space: C = 48, 4-18
   cells), ``test@small`` (the split's genotypes at the scale of the ``small`` meta-training
   preset: C = 8-16, 4-8 cells, at most 60 MFLOPs) and ``bn-free@small``. Then torchvision
   classifiers adapted to Fashion-MNIST (first convolution with one input channel, 10
   classes) and the zoo's FM/16 ``cnn``.
2. **Fine-tuning.** AdamW (lr ``--finetune-lr``, 1e-3 by default; batch 128) from the
   prediction and from the default initialisation, paired (same batches), test accuracy on
   the first 2,000 test images every 25 steps; steps to 70% and 80%.
3. **Prediction time.** Graph construction plus prediction, per model at ImageNet shape (the
   published claim: ResNet-50 about 1 s on a CPU for GHN-3).

Writes ``bench/results/ghn.json`` (``ghn_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers.data.datasets import fashion_mnist  # noqa: E402
from workers.ghn.deepnets import build_network, sample_spec  # noqa: E402
from workers.ghn.evaluate import CALIBRATION_IMAGES, accuracy, prepare  # noqa: E402
from workers.ghn.metatrain import (  # noqa: E402
    OURS_PATH,
    PRESETS,
    evaluate_predictions,
    forward_mflops,
    train_spec,
)
from workers.ghn.model import load_ghn  # noqa: E402
from workers.ghn.predict import predict_parameters  # noqa: E402
from workers.graphs.arch.graph import architecture_graph  # noqa: E402
from workers.provenance import machine_info  # noqa: E402
from workers.training.loop import train  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGETS = (0.7, 0.8)
# The architecture graph of an adapted classifier is traced on a Fashion-MNIST-shaped batch.
FM_EXAMPLE = torch.zeros(2, 1, 28, 28)
CALIBRATION_BATCH = 128  # images per BatchNorm calibration batch


def small_specs(split: str, n: int) -> list[Any]:
    """``n`` architectures of ``split`` at the small preset's scale (as meta-trained)."""
    preset = PRESETS["small"]
    specs = []
    seed = 0
    while len(specs) < n:
        spec = train_spec(seed, preset.channels, preset.cells, split=split)
        if forward_mflops(build_network(spec), torch.zeros(1, 1, 28, 28)) <= preset.max_mflops:
            specs.append(spec)
        seed += 1
    return specs


def adapted(name: str) -> Callable[[], nn.Module]:
    """A torchvision classifier for 1 x 28 x 28 inputs and 10 classes, or the zoo's cnn."""

    def build() -> nn.Module:
        if name == "fm16-cnn":
            from workers.zoo.build import build_model

            return build_model("cnn")
        import torchvision

        model = getattr(torchvision.models, name)(num_classes=10)
        for parent in model.modules():
            for child_name, child in parent.named_children():
                if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                    setattr(
                        parent,
                        child_name,
                        nn.Conv2d(
                            1,
                            child.out_channels,
                            child.kernel_size,
                            child.stride,
                            child.padding,
                            bias=child.bias is not None,
                        ),
                    )
                    return model
        return model

    return build


def section_no_training(ghn: Any, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    x_cal, x_eval, y_eval = (
        data.x_train[:CALIBRATION_IMAGES],
        data.x_test[: args.images],
        data.y_test[: args.images],
    )
    out: dict[str, Any] = {}
    for split in args.splits:
        name, _, scale = split.partition("@")
        specs = (
            small_specs(name, args.archs)
            if scale
            else [sample_spec(name, s) for s in range(args.full_archs)]
        )
        rows = {}
        for label, model in (("ghn", ghn), ("random", None)):
            rows[label] = evaluate_predictions(model, specs, x_cal, x_eval, y_eval)
            accs = [r["accuracy"] for r in rows[label]]
            print(
                f"  {split:<16} {label:<7} {statistics.fmean(accs):6.1%} ± "
                f"{statistics.pstdev(accs):.1%}  (n={len(accs)})",
                flush=True,
            )
        out[split] = _summary(rows)
    models = {}
    for name in args.models:
        build = adapted(name)
        # Predicted, then the default initialisation, both from seed 0 and calibrated alike.
        predicted = prepare(build, ghn, FM_EXAMPLE, x_cal.split(CALIBRATION_BATCH), seed=0)
        rand = prepare(build, None, calibration=x_cal.split(CALIBRATION_BATCH), seed=0)
        models[name] = {
            "params": sum(p.numel() for p in predicted.model.parameters()),
            "ghn": accuracy(predicted.model, x_eval, y_eval),
            "random": accuracy(rand.model, x_eval, y_eval),
            "predict_seconds": round(predicted.seconds, 3),
        }
        print(
            f"  {name:<16} ghn {models[name]['ghn']:6.1%}  random {models[name]['random']:6.1%}",
            flush=True,
        )
    out["models"] = models
    return out


def _summary(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"architectures": rows["ghn"]}
    for label, results in rows.items():
        accs = [r["accuracy"] for r in results]
        summary[label] = {
            "mean": round(statistics.fmean(accs), 4),
            "std": round(statistics.pstdev(accs), 4),
            "min": round(min(accs), 4),
            "max": round(max(accs), 4),
            "accuracies": [round(a, 4) for a in accs],
        }
    return summary


def section_finetune(ghn: Any, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    from workers.data.datasets import ClassificationData

    subset = ClassificationData(
        name="fashion-mnist",
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test[:2000],
        y_test=data.y_test[:2000],
        num_classes=10,
    )
    specs = small_specs("test", args.finetune_archs)
    cases: list[tuple[str, Callable[[], nn.Module]]] = [
        (f"test@small #{s.seed}", lambda s=s: build_network(s)) for s in specs
    ]
    cases += [(name, adapted(name)) for name in args.finetune_models]
    out = {}
    for name, build in cases:
        runs = {}
        for label in ("ghn", "default"):
            calibration = data.x_train[:CALIBRATION_IMAGES].split(CALIBRATION_BATCH)
            prepared = prepare(
                build, ghn if label == "ghn" else None, FM_EXAMPLE, calibration, seed=0
            )
            model = prepared.model
            result = train(
                model,
                subset,
                optimizer="adamw",
                lr=args.finetune_lr,
                batch_size=128,
                steps=args.finetune_steps,
                eval_every=25,
                eval_at_start=True,
                targets=TARGETS,
                seed=0,
            )
            runs[label] = {
                "steps_to_target": {str(k): v for k, v in result.steps_to_target.items()},
                "start_accuracy": result.evals[0][1]["accuracy"],
                "final_accuracy": result.final_metrics["accuracy"],
                "curve": [(s, round(m["accuracy"], 4)) for s, m in result.evals],
            }
        out[name] = runs
        g, d = runs["ghn"], runs["default"]
        print(
            f"  {name:<16} to 70%: {_steps(g, 0.7)} vs {_steps(d, 0.7)}   to 80%: "
            f"{_steps(g, 0.8)} vs {_steps(d, 0.8)}   final {g['final_accuracy']:.1%} vs "
            f"{d['final_accuracy']:.1%}",
            flush=True,
        )
    return out


def _steps(run: dict[str, Any], target: float) -> str:
    value = run["steps_to_target"].get(str(target))
    return "n/r" if value is None else str(value)


def section_timing(ghn: Any, args: argparse.Namespace) -> dict[str, Any]:
    import torchvision

    out = {}
    for name in args.timing_models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)()
        start = time.perf_counter()
        graph = architecture_graph(model)
        traced = time.perf_counter()
        report = predict_parameters(ghn, model, graph)
        done = time.perf_counter()
        out[name] = {
            "params": report.n_params_total,
            "predicted_params": report.n_params_predicted,
            "graph_nodes": graph.n_nodes,
            "graph_seconds": round(traced - start, 3),
            "predict_seconds": round(done - traced, 3),
            "total_seconds": round(done - start, 3),
        }
        print(
            f"  {name:<20} {report.n_params_total:>12,} params  {graph.n_nodes:>4} nodes  "
            f"graph {traced - start:.2f} s + prediction {done - traced:.2f} s",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ghn", default=str(OURS_PATH))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--archs", type=int, default=10, help="per split at the small scale")
    parser.add_argument("--full-archs", type=int, default=6, help="per split at full scale")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--splits", nargs="+", default=["test@small", "bn-free@small", "test"])
    parser.add_argument(
        "--models", nargs="+", default=["fm16-cnn", "resnet18", "resnet50", "mobilenet_v3_small"]
    )
    parser.add_argument("--finetune-archs", type=int, default=1)
    parser.add_argument("--finetune-models", nargs="*", default=["fm16-cnn", "resnet18"])
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument(
        "--timing-models",
        nargs="+",
        default=["resnet18", "resnet50", "mobilenet_v3_small", "vit_b_16"],
    )
    parser.add_argument("--sections", nargs="+", default=["none", "finetune", "timing"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.archs, args.full_archs, args.images, args.splits = 2, 1, 200, ["test@small"]
        args.models, args.finetune_archs = ["fm16-cnn"], 0
        args.finetune_models, args.finetune_steps = ["fm16-cnn"], 50
        args.timing_models = ["resnet18"]
    out = args.out or RESULTS / ("ghn_quick.json" if args.quick else "ghn.json")
    torch.set_num_threads(args.threads)
    ghn = load_ghn(args.ghn).eval()
    data = fashion_mnist()
    doc: dict[str, Any] = {
        "benchmark": "ghn",
        "date": time.strftime("%Y-%m-%d"),
        "ghn": os.path.relpath(args.ghn, ROOT),
        "machine": machine_info(args.threads),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "ghn")},
    }
    if "none" in args.sections:
        print("Accuracy with no training (mean ± std over architectures):")
        doc["no_training"] = section_no_training(ghn, data, args)
    if "finetune" in args.sections:
        print("Fine-tuning, steps to target: from the prediction vs from default init:")
        doc["finetune"] = section_finetune(ghn, data, args)
    if "timing" in args.sections:
        print("Prediction time at ImageNet shape (graph + prediction, one CPU thread):")
        doc["timing"] = section_timing(ghn, args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
