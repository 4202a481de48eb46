"""Trajectories of Hugging Face causal LMs: a run of an HF config is collected like a zoo
model, its parameter graph is the one a NiNo optimizer traces for that model, and a published
or own checkpoint fine-tunes on such a store from the command line."""

from __future__ import annotations

import json

import numpy as np
import torch

from workers.data.text import make_text_data
from workers.graphs.params.graph import build_param_graph
from workers.nino import NiNoModel, load_model
from workers.nino.metatrain import main, save_weights
from workers.nino.trajectories import (
    PRESETS,
    RunSpec,
    TrajectoryStore,
    collect_run,
    graph_for,
    make_window,
)
from workers.zoo.hf import SMALL_CONFIGS, build_hf_model

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind. " * 20
TINY_LLAMA = {
    "model_type": "llama",
    "num_hidden_layers": 1,
    "hidden_size": 8,
    "intermediate_size": 16,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 8,
    "vocab_size": 40,  # more ids than the text's characters: the spare ones stay unused
    "tie_word_embeddings": False,
}


def tiny_spec(seed: int = 3, heldout: bool = False) -> RunSpec:
    return RunSpec("hf", {"config": TINY_LLAMA}, "tiny", seed, steps=12, spacing=2, lr=1e-2,
                   batch_size=4, heldout=heldout)  # fmt: skip


def tiny_data():
    return make_text_data("tiny", TEXT, context=8)


def test_an_hf_run_is_collected_and_its_graph_is_the_one_nino_traces(tmp_path) -> None:
    store = TrajectoryStore.create(tmp_path / "store")
    data = tiny_data()
    entry = collect_run(store, tiny_spec(), data)

    assert entry["id"] == "tiny-hf-llama-d8l1-lr0.01-s3"
    assert entry["args"] == {"config": TINY_LLAMA} and entry["num_checkpoints"] == 7
    torch.manual_seed(3)
    model = build_hf_model(TINY_LLAMA)
    shapes = [[name, list(p.shape)] for name, p in model.named_parameters()]
    assert TrajectoryStore.open(store.root).run(entry["id"])["params"] == shapes
    array = store.array(entry["id"])
    assert array.shape == (7, sum(p.numel() for p in model.parameters()))
    assert not np.array_equal(array[0], array[-1])  # it did train

    graph = graph_for(entry).graph
    assert {n: tuple(s) for n, s in graph.param_shapes.items()} == {n: tuple(s) for n, s in shapes}
    # The graph a NiNo optimizer builds in a train job: traced on the data's own window.
    traced = build_param_graph(model, data.example_batch(1))
    assert torch.equal(graph.edge_index, traced.edge_index)
    assert torch.equal(graph.edge_type, traced.edge_type)
    window = make_window(store, entry["id"], 1)
    assert window.target.shape == (graph.num_edges, 9, 40)
    assert window.mask[:, :, :1].any() and not window.mask[:, :, 1:].any()  # row 6 only


def test_a_checkpoint_fine_tunes_on_an_hf_store_from_the_command_line(tmp_path) -> None:
    store = TrajectoryStore.create(tmp_path / "store")
    collect_run(store, tiny_spec(), tiny_data())
    torch.manual_seed(0)
    init = save_weights(NiNoModel(), tmp_path / "init.pt")
    out = tmp_path / "ft" / "nino_ft.pt"

    argv = ["train", "--data", str(store.root), "--out", str(out), "--init", str(init),
            "--steps", "2", "--batch", "1", "--lr", "3e-4"]  # fmt: skip
    main(argv)

    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["initialisation"] == str(init) and manifest["training"]["steps_done"] == 2
    assert manifest["data"]["families"] == ["hf/tiny"]
    before, after = load_model(init).state_dict(), load_model(out).state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_the_llama_preset_is_the_benchmarks_llama_on_seeds_it_does_not_evaluate() -> None:
    specs = PRESETS["llama"]
    assert {s.family for s in specs} == {"hf"} and {s.dataset for s in specs} == {"shakespeare"}
    assert all(s.lr == 3e-3 and s.batch_size == 32 and s.spacing == 200 for s in specs)
    assert not {s.seed for s in specs} & {0, 1, 2}
    assert [s.heldout for s in specs].count(True) == 1
    assert specs[0].args["config"] == SMALL_CONFIGS["llama-2x64"]
    assert len({s.run_id for s in specs}) == len(specs)
