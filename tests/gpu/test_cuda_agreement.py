"""On a GPU, the engine computes what it computes on the CPU: a NiNo nowcast with the published
checkpoint and a GHN prediction agree within float32 tolerance across devices."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


def _drifting_states(model: torch.nn.Module, count: int = 5) -> list[dict[str, torch.Tensor]]:
    # Five snapshots of a run that drifts steadily, with a little noise: what NiNo reads.
    generator = torch.Generator().manual_seed(0)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    direction = {n: torch.randn(p.shape, generator=generator) for n, p in start.items()}
    return [
        {n: start[n] + 0.01 * t * direction[n]
            + 0.001 * torch.randn(start[n].shape, generator=generator) for n in start}
        for t in range(count)
    ]  # fmt: skip


def test_a_nowcast_with_the_published_checkpoint_agrees_on_cuda_and_cpu():
    from workers.nino import load_model
    from workers.nino.optimizer import NiNo, NowcastConfig
    from workers.zoo.build import build_model

    torch.manual_seed(0)
    model = build_model("cnn")  # the FM/16 network of the published protocol
    states = _drifting_states(model)
    results = {}
    for device in ("cpu", "cuda"):
        base = torch.optim.Adam(model.parameters(), lr=1e-3)
        nino = NiNo(base, model, load_model("nino_no_posw").to(device), NowcastConfig(period=10))
        results[device] = nino.nowcast(states, k=40)
    for name, on_cpu in results["cpu"].items():
        on_cuda = results["cuda"][name]
        scale = on_cpu.abs().max().clamp_min(1e-6)
        assert (on_cuda.cpu() - on_cpu).abs().max() / scale < 1e-4, name


def test_a_ghn_prediction_agrees_on_cuda_and_cpu():
    from tests.paths import ROOT
    from workers.ghn.model import load_ghn
    from workers.ghn.predict import predict_tensors
    from workers.graphs.arch.graph import architecture_graph
    from workers.zoo.build import build_model, example_input

    ghn_path = str(ROOT / "workers" / "ghn" / "weights" / "ghn_ours.pt")
    torch.manual_seed(0)
    graph = architecture_graph(build_model("cnn"), example_input("cnn", {}))  # one graph for both
    predicted = {}
    for device in ("cpu", "cuda"):
        ghn = load_ghn(ghn_path).to(device).eval()
        model = build_model("cnn").to(device)
        with torch.no_grad():
            tensors, _ = predict_tensors(ghn, model, graph)
        predicted[device] = {n: t.detach().cpu() for n, t in tensors.items()}
    assert predicted["cpu"].keys() == predicted["cuda"].keys() and predicted["cpu"]
    for name, on_cpu in predicted["cpu"].items():
        scale = on_cpu.abs().max().clamp_min(1e-6)
        assert (predicted["cuda"][name] - on_cpu).abs().max() / scale < 1e-4, name


def test_a_hugging_face_model_computes_the_same_logits_on_cuda_and_cpu():
    from workers.zoo.hf import build_hf_model

    config = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 32,
              "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 256}  # fmt: skip
    ids = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    logits = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = build_hf_model(config).to(device).eval()
        with torch.no_grad():
            logits[device] = model(ids.to(device)).cpu()
    assert (logits["cuda"] - logits["cpu"]).abs().max() < 1e-4
