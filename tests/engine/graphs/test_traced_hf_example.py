"""A Hugging Face causal LM is read on a train job's own batch, whatever its window length.

Its parameter graph comes from a ``torch.export`` program made for tracing; the program
accepts only the window it was exported with, so a caller's batch of the data's context
(128 tokens in a train job) used to fail the program's guards and refuse NiNo.
"""

from __future__ import annotations

import pytest
import torch

from workers.graphs.params.graph import build_param_graph

LLAMA = {
    "model_type": "llama",
    "num_hidden_layers": 1,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "vocab_size": 64,
    "tie_word_embeddings": False,
}


@pytest.mark.parametrize("length", [1, 8, 128])
def test_a_hugging_face_llama_is_read_fully_on_a_batch_of_any_window_length(length):
    from workers.zoo.hf import build_hf_model

    model = build_hf_model(LLAMA)
    batch = torch.randint(0, 64, (1, length))

    graph = build_param_graph(model, example=batch)

    assert graph.coverage()["nowcast"] == sum(p.numel() for p in model.parameters())


def test_nino_for_a_hugging_face_config_is_built_on_the_text_data_own_batch():
    from workers.catalog import TrainSpec
    from workers.data.text import text_corpus
    from workers.nino.optimizer import NiNo
    from workers.pipelines.train import make_accelerated_optimizer
    from workers.zoo.hf import build_hf_model

    data = text_corpus("shakespeare", context=128)
    model = build_hf_model({**LLAMA, "vocab_size": data.info.num_classes})
    spec = TrainSpec(optimizer="adamw", lr=1e-3, steps=2000, accelerator="nino", period=1000)

    optimizer = make_accelerated_optimizer("nino", model, spec, example=data.example_batch(1))

    assert isinstance(optimizer, NiNo)
    assert optimizer.coverage["nowcast"] == optimizer.coverage["total"]
