"""Handlers for the block layouts of the built-in model families (residual CNN, GPT-2, Llama).

These encode the published NiNo conventions for skip connections and attention (see
``workers.graphs.params.graph``). They read a block through its attribute names only, so this
module imports no model code: ``workers.zoo.builtin`` registers them for its classes
(``register_block``), and any other class with the same attributes and data flow may reuse
them. The layout each handler expects is in its docstring.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workers.errors import ModelError
from workers.graphs.params.builder import GraphBuilder
from workers.graphs.params.container import EDGE_TYPES


def residual_conv_block(builder: GraphBuilder, block: nn.Module, current: Tensor | None) -> Tensor:
    """``out = f(x + conv2(g(conv1(x))))``: two convolutions plus one-to-one residual edges.

    Expects ``block.conv1`` and ``block.conv2`` (no other parameters); the residual edges run
    from the block input neurons to ``conv2``'s outputs.
    """
    x = builder.inputs(current, block.conv1.in_channels, block.conv1)
    out = builder.conv(block.conv2, builder.conv(block.conv1, x))
    builder.aux_edges(x, out, EDGE_TYPES["residual"])
    return out


def gpt2_decoder(builder: GraphBuilder, model: nn.Module, current: Tensor | None) -> Tensor:
    """A GPT-2 decoder: token + learned position embeddings, blocks, final norm, head.

    Expects ``tok_emb``, ``pos_emb`` (Embedding), ``blocks`` (each as ``gpt2_block`` reads it),
    ``ln_f`` and ``head`` (Linear).
    """
    stream = builder.embedding(model.tok_emb, None, EDGE_TYPES["token_embedding"])
    builder.embedding(model.pos_emb, stream, EDGE_TYPES["position_embedding"])
    for block in model.blocks:
        stream = gpt2_block(builder, block, stream)
    stream = builder.norm(model.ln_f, stream)
    return builder.linear(model.head, stream)


def gpt2_block(builder: GraphBuilder, block: nn.Module, x: Tensor) -> Tensor:
    """A pre-LayerNorm GPT-2 block with a fused ``qkv`` projection.

    Expects ``ln1``, ``attn`` (with ``qkv`` [3d, d], ``proj`` and ``n_heads``), ``ln2`` and
    ``mlp`` (``fc1``, ``fc2``). Query/value neurons are new; keys run transposed from the query
    neurons back to the block input, so they need no neurons of their own.
    """
    builder.norm(block.ln1, x)
    attn = block.attn
    d, n_heads = attn.proj.in_features, attn.n_heads
    w_name, _ = builder.param(attn.qkv, "weight")
    has_bias = attn.qkv.bias is not None
    bias_nodes = builder.nodes(3) if has_bias else None
    q, v = builder.nodes(d), builder.nodes(d)
    heads = builder.nodes(n_heads)
    builder.param_edges(w_name, (0, d), x, q, EDGE_TYPES["query"])
    builder.param_edges(w_name, (d, 2 * d), x, q, EDGE_TYPES["key"], reverse=True)
    builder.param_edges(w_name, (2 * d, 3 * d), x, v, EDGE_TYPES["value"])
    if bias_nodes is not None:
        b_name, _ = builder.param(attn.qkv, "bias")
        # A bias joins its layer's outputs. The key layer runs transposed, so its "outputs"
        # are the block input neurons: the reference attaches the key bias there too.
        for j, (rows, neurons) in enumerate((((0, d), q), ((d, 2 * d), x), ((2 * d, 3 * d), v))):
            builder.param_edges(b_name, rows, bias_nodes[j : j + 1], neurons, EDGE_TYPES["bias"])
    head_dim = d // n_heads
    builder.head_edges(heads, q, head_dim, 1)
    builder.head_edges(heads, v, head_dim, 1)
    out = builder.linear(attn.proj, v)
    builder.aux_edges(x, out, EDGE_TYPES["residual"])
    builder.norm(block.ln2, out)
    hidden = builder.linear(block.mlp.fc1, out)
    mlp_out = builder.linear(block.mlp.fc2, hidden)
    builder.aux_edges(out, mlp_out, EDGE_TYPES["residual"])
    return mlp_out


def llama_decoder(builder: GraphBuilder, model: nn.Module, current: Tensor | None) -> Tensor:
    """A Llama decoder: token embedding, blocks, final norm, head (rotary positions: no params).

    Expects ``embed_tokens``, ``layers`` (each as ``llama_block`` reads it), ``norm`` and
    ``lm_head``.
    """
    stream = builder.embedding(model.embed_tokens, None, EDGE_TYPES["token_embedding"])
    for layer in model.layers:
        stream = llama_block(builder, layer, stream)
    stream = builder.norm(model.norm, stream)
    return builder.linear(model.lm_head, stream)


def llama_block(builder: GraphBuilder, block: nn.Module, x: Tensor) -> Tensor:
    """A pre-RMSNorm Llama block: grouped-query attention, then a SwiGLU MLP; no biases.

    Expects ``input_layernorm``, ``self_attn`` (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``,
    ``n_heads``, ``n_kv_heads``, ``head_dim``), ``post_attention_layernorm`` and ``mlp``
    (``gate_proj``, ``up_proj``, ``down_proj``).
    """
    builder.norm(block.input_layernorm, x)
    attn = block.self_attn
    n_heads, n_kv, head_dim = attn.n_heads, attn.n_kv_heads, attn.head_dim
    group = n_heads // n_kv
    x = builder.inputs(x, attn.q_proj.in_features, attn.q_proj)
    q = builder.linear(attn.q_proj, x, EDGE_TYPES["query"])
    # Key row g*head_dim + j meets query dimension j of every head in group g; its edges
    # run from the query neuron of the group's first head back to the block input.
    kv_rows = torch.arange(n_kv * head_dim)
    key_partner = q[(kv_rows // head_dim) * group * head_dim + kv_rows % head_dim]
    k_name, _ = builder.param(attn.k_proj, "weight")
    if attn.k_proj.bias is not None or attn.v_proj.bias is not None:
        raise ModelError(f"Attention {builder.name_of(attn)} has k/v biases; not supported.")
    builder.param_edges(k_name, (0, len(kv_rows)), x, key_partner, EDGE_TYPES["key"], reverse=True)
    v = builder.linear(attn.v_proj, x, EDGE_TYPES["value"])
    heads = builder.nodes(n_heads)
    builder.head_edges(heads, q, head_dim, 1)
    builder.head_edges(heads, v, head_dim, group)
    # The output projection's input h*head_dim + j is value dimension j of kv head h // G.
    cols = torch.arange(n_heads * head_dim)
    o_src = v[(cols // head_dim // group) * head_dim + cols % head_dim]
    out = builder.dense(attn.o_proj, o_src, len(o_src), attn.o_proj.out_features, 1)
    builder.aux_edges(x, out, EDGE_TYPES["residual"])
    builder.norm(block.post_attention_layernorm, out)
    mlp = block.mlp
    gate_name, _ = builder.param(mlp.gate_proj, "weight")
    up_name, _ = builder.param(mlp.up_proj, "weight")
    if mlp.gate_proj.bias is not None or mlp.up_proj.bias is not None:
        raise ModelError(f"MLP {builder.name_of(mlp)} has gate/up biases; not supported.")
    hidden = builder.nodes(mlp.gate_proj.out_features)
    builder.param_edges(gate_name, (0, len(hidden)), out, hidden, EDGE_TYPES["linear"])
    builder.param_edges(up_name, (0, len(hidden)), out, hidden, EDGE_TYPES["linear"])
    mlp_out = builder.linear(mlp.down_proj, hidden)
    builder.aux_edges(out, mlp_out, EDGE_TYPES["residual"])
    return mlp_out
