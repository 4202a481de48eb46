"""Small built-in model families used by the benchmarks (plain ``nn.Module`` code).

Every parameter lives in a standard ``torch.nn`` layer (Linear, Conv2d, Embedding, LayerNorm,
RMSNorm) so that graph builders and parameter-prediction tools can read the models without
special cases.

Argument specifications are plain dicts (``BUILTIN_SPECS``, defined in ``builtin_specs`` and
re-exported here); ``make_catalog`` copies them into ``catalog.json`` and
``catalog.validate_args`` checks user arguments against them.

The blocks that are not chains of layers (``ResidualBlock``, ``CharTransformer``, ``Llama``)
are registered with the parameter graph at the end of this module, so that every instance of
them can be turned into a NiNo graph however it was made.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workers.graphs.params import blocks as param_graph_blocks
from workers.graphs.params.registry import register_block
from workers.zoo.builtin_specs import BUILTIN_SPECS

__all__ = [
    "BUILTIN_SPECS",
    "MLP",
    "Block",
    "CausalSelfAttention",
    "CharTransformer",
    "FeedForward",
    "Llama",
    "LlamaAttention",
    "LlamaBlock",
    "ResidualBlock",
    "ResidualCNN",
    "SmallCNN",
    "SwiGLU",
    "build_builtin",
]


class MLP(nn.Module):
    """Flatten, then Linear+ReLU for each hidden width, then a Linear classifier."""

    def __init__(self, in_features: int, hidden: list[int], num_classes: int) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch; any trailing dimensions are flattened into features."""
        return self.layers(torch.flatten(x, 1))


class SmallCNN(nn.Module):
    """The NiNo FM/16 CNN: 3x3 convs (first one strided) + ReLU, global pool, linear head.

    Laid out as the published task: the first conv has stride 2 and no padding (28×28 → 13×13),
    the others keep the size ('same'). 14,378 parameters for channels 16-32-32, one input
    channel and ten classes; parameters in the same order as the published model's.
    """

    def __init__(self, in_channels: int, channels: list[int], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        fan_in = in_channels
        for i, fan_out in enumerate(channels):
            layers += [
                nn.Conv2d(fan_in, fan_out, kernel_size=3, stride=2, padding=0)
                if i == 0
                else nn.Conv2d(fan_in, fan_out, kernel_size=3, padding="same"),
                nn.ReLU(),
            ]
            fan_in = fan_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(fan_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of images shaped [batch, in_channels, H, W]."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with an identity skip connection (no normalisation)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return relu(x + conv2(relu(conv1(x))))."""
        return self.relu(x + self.conv2(self.relu(self.conv1(x))))


class ResidualCNN(nn.Module):
    """Strided stem convolution, ``num_blocks`` residual blocks, global pool, linear head."""

    def __init__(self, in_channels: int, width: int, num_blocks: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, kernel_size=3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(num_blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of images shaped [batch, in_channels, H, W]."""
        x = self.blocks(self.relu(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a fused qkv projection."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over a [batch, T, d_model] sequence, each position seeing only its past."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        # unflatten/transpose rather than view(b, t, ...) so torch.fx can trace it without
        # unpacking symbolic sizes.
        heads = (self.n_heads, -1)
        q = q.unflatten(-1, heads).transpose(1, 2)
        k = k.unflatten(-1, heads).transpose(1, 2)
        v = v.unflatten(-1, heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    """Position-wise MLP: Linear, GELU, Linear."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to every position independently."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block (GPT-2 layout)."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = FeedForward(d_model, mlp_ratio * d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual attention, then residual MLP."""
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """GPT-2-style decoder over character ids; returns logits shaped [batch, T, vocab_size]."""

    def __init__(
        self,
        vocab_size: int,
        context: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        mlp_ratio: int,
    ) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, mlp_ratio) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(_gpt2_init)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Map token ids [batch, T] (T <= context) to next-token logits."""
        positions = torch.arange(idx.size(1), device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    # Pairs (x1, x2) of the two halves rotate as (-x2, x1): the "rotate_half" form of RoPE.
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class LlamaAttention(nn.Module):
    """Causal grouped-query attention with rotary position embeddings and no biases."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, context: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=False)
        # RoPE tables are derived data, not state: non-persistent buffers keep them out of
        # checkpoints and out of the parameter graph.
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        angles = torch.outer(torch.arange(context).float(), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over a [batch, T, d_model] sequence, each position seeing only its past."""
        q = self.q_proj(x).unflatten(-1, (self.n_heads, -1)).transpose(1, 2)
        k = self.k_proj(x).unflatten(-1, (self.n_kv_heads, -1)).transpose(1, 2)
        v = self.v_proj(x).unflatten(-1, (self.n_kv_heads, -1)).transpose(1, 2)
        cos, sin = self.cos[: x.size(1)], self.sin[: x.size(1)]
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        # Each key/value head serves n_heads / n_kv_heads consecutive query heads.
        groups = self.n_heads // self.n_kv_heads
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).flatten(2))


class SwiGLU(nn.Module):
    """Llama MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden, bias=False)
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the gated MLP to every position independently."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaBlock(nn.Module):
    """Pre-RMSNorm Llama block: residual attention, then residual SwiGLU MLP."""

    def __init__(
        self, d_model: int, n_heads: int, n_kv_heads: int, mlp_hidden: int, context: int
    ) -> None:
        super().__init__()
        self.input_layernorm = nn.RMSNorm(d_model, eps=1e-6)
        self.self_attn = LlamaAttention(d_model, n_heads, n_kv_heads, context)
        self.post_attention_layernorm = nn.RMSNorm(d_model, eps=1e-6)
        self.mlp = SwiGLU(d_model, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual attention, then residual MLP."""
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    """Llama-style decoder over token ids; returns logits shaped [batch, T, vocab_size]."""

    def __init__(
        self,
        vocab_size: int,
        context: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        n_kv_heads: int,
        mlp_hidden: int,
    ) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(
            LlamaBlock(d_model, n_heads, n_kv_heads, mlp_hidden, context) for _ in range(n_layers)
        )
        self.norm = nn.RMSNorm(d_model, eps=1e-6)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(_gpt2_init)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Map token ids [batch, T] (T <= context) to next-token logits."""
        x = self.embed_tokens(idx)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def _gpt2_init(module: nn.Module) -> None:
    # GPT-2 initialises weights with N(0, 0.02) and biases with zeros; PyTorch's default
    # (Kaiming-uniform) trains noticeably worse for small language models.
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def build_builtin(name: str, args: dict[str, Any]) -> nn.Module:
    """Build built-in family ``name`` from complete, already validated ``args``.

    Callers should go through ``workers.zoo.build.build_model``, which fills in defaults and
    validates; this function only maps arguments to constructors.
    """
    if name == "mlp":
        return MLP(args["in_features"], list(args["hidden"]), args["num_classes"])
    if name == "cnn":
        return SmallCNN(args["in_channels"], list(args["channels"]), args["num_classes"])
    if name == "cnn_residual":
        return ResidualCNN(
            args["in_channels"], args["width"], args["num_blocks"], args["num_classes"]
        )
    if name == "transformer":
        return CharTransformer(
            args["vocab_size"],
            args["context"],
            args["d_model"],
            args["n_layers"],
            args["n_heads"],
            args["mlp_ratio"],
        )
    if name == "llama":
        return Llama(
            args["vocab_size"],
            args["context"],
            args["d_model"],
            args["n_layers"],
            args["n_heads"],
            args["n_kv_heads"],
            args["mlp_hidden"],
        )
    raise KeyError(f"unknown built-in family {name!r}")


# The parameter graph reads models as chains of layers; these three are not chains (skip
# connections, attention), so their data flow is registered here, next to the classes: any
# instance implies this module was imported, hence registered (see the graph registry).
register_block(ResidualBlock, param_graph_blocks.residual_conv_block)
register_block(CharTransformer, param_graph_blocks.gpt2_decoder)
register_block(Llama, param_graph_blocks.llama_decoder)
