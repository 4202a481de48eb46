"""How big a catalog model is and how much memory a job on it needs, without building it.

Pure Python (no torch, no Django): the web tier refuses models above ``MAX_MODEL_PARAMS`` when
an architecture is added, the worker refuses jobs above ``JOB_MEMORY_LIMIT`` before it builds
the model. ``tests/engine/catalog/test_param_estimates.py`` checks every formula against the
real ``sum(p.numel())`` of built models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Parameters per output class of each torchvision entry's classifier head(s): the
# ``num_classes`` argument changes only the head, so a count is the catalog's ``num_params``
# (measured with 1000 classes) plus this times the difference. Most heads are one Linear
# (in_features weights + a bias per class); GoogLeNet and Inception v3 also have auxiliary
# heads, SqueezeNet a 1×1 convolution, MaxViT a Linear without bias. Measured with
# ``build_model(name, {"num_classes": n}, device="meta")`` for n = 1, 2; the test keeps them so.
# fmt: off
TORCHVISION_PARAMS_PER_CLASS: dict[str, int] = {
    "alexnet": 4097, "convnext_base": 1025, "convnext_large": 1537, "convnext_small": 769,
    "convnext_tiny": 769, "densenet121": 1025, "densenet161": 2209, "densenet169": 1665,
    "densenet201": 1921, "efficientnet_b0": 1281, "efficientnet_b1": 1281, "efficientnet_b2": 1409,
    "efficientnet_b3": 1537, "efficientnet_b4": 1793, "efficientnet_b5": 2049,
    "efficientnet_b6": 2305, "efficientnet_b7": 2561, "efficientnet_v2_l": 1281,
    "efficientnet_v2_m": 1281, "efficientnet_v2_s": 1281, "googlenet": 3075, "inception_v3": 2818,
    "maxvit_t": 512, "mnasnet0_5": 1281, "mnasnet0_75": 1281, "mnasnet1_0": 1281,
    "mnasnet1_3": 1281, "mobilenet_v2": 1281, "mobilenet_v3_large": 1281,
    "mobilenet_v3_small": 1025, "regnet_x_16gf": 2049, "regnet_x_1_6gf": 913,
    "regnet_x_32gf": 2521, "regnet_x_3_2gf": 1009, "regnet_x_400mf": 401, "regnet_x_800mf": 673,
    "regnet_x_8gf": 1921, "regnet_y_128gf": 7393, "regnet_y_16gf": 3025, "regnet_y_1_6gf": 889,
    "regnet_y_32gf": 3713, "regnet_y_3_2gf": 1513, "regnet_y_400mf": 441, "regnet_y_800mf": 785,
    "regnet_y_8gf": 2017, "resnet101": 2049, "resnet152": 2049, "resnet18": 513, "resnet34": 513,
    "resnet50": 2049, "resnext101_32x8d": 2049, "resnext101_64x4d": 2049, "resnext50_32x4d": 2049,
    "shufflenet_v2_x0_5": 1025, "shufflenet_v2_x1_0": 1025, "shufflenet_v2_x1_5": 1025,
    "shufflenet_v2_x2_0": 2049, "squeezenet1_0": 513, "squeezenet1_1": 513, "swin_b": 1025,
    "swin_s": 769, "swin_t": 769, "swin_v2_b": 1025, "swin_v2_s": 769, "swin_v2_t": 769,
    "vgg11": 4097, "vgg11_bn": 4097, "vgg13": 4097, "vgg13_bn": 4097, "vgg16": 4097,
    "vgg16_bn": 4097, "vgg19": 4097, "vgg19_bn": 4097, "vit_b_16": 769, "vit_b_32": 769,
    "vit_h_14": 1281, "vit_l_16": 1025, "vit_l_32": 1025, "wide_resnet101_2": 2049,
    "wide_resnet50_2": 2049,
}
# fmt: on


def estimate_params(name: str, full_args: dict[str, Any], entry: dict[str, Any]) -> int | None:
    """The parameter count of catalog model ``name`` built with complete, validated arguments.

    Exact for the built-in families and for the torchvision entries listed above; an upper
    bound for a torchvision entry missing from the table (the widest head per class); None
    for anything else.
    """
    a = full_args
    if name == "mlp":
        widths = [a["in_features"], *a["hidden"], a["num_classes"]]
        pairs = zip(widths[:-1], widths[1:], strict=True)
        return sum(fan_in * fan_out + fan_out for fan_in, fan_out in pairs)
    if name == "cnn":
        # 3×3 convolutions with bias, then a Linear head on the pooled last channels.
        channels = [a["in_channels"], *a["channels"]]
        pairs = zip(channels[:-1], channels[1:], strict=True)
        convs = sum(9 * c_in * c_out + c_out for c_in, c_out in pairs)
        return convs + channels[-1] * a["num_classes"] + a["num_classes"]
    if name == "cnn_residual":
        w = a["width"]
        stem = 9 * a["in_channels"] * w + w
        blocks = a["num_blocks"] * 2 * (9 * w * w + w)
        return stem + blocks + w * a["num_classes"] + a["num_classes"]
    if name == "transformer":
        d, v, hidden = a["d_model"], a["vocab_size"], a["mlp_ratio"] * a["d_model"]
        layer_norms = 2 * 2 * d  # two LayerNorms, weight and bias
        attention = (d * 3 * d + 3 * d) + (d * d + d)  # fused qkv, output projection
        mlp = (d * hidden + hidden) + (hidden * d + d)
        block = layer_norms + attention + mlp
        # token + position embeddings, blocks, final LayerNorm, untied head without bias
        return v * d + a["context"] * d + a["n_layers"] * block + 2 * d + d * v
    if name == "llama":
        d, v = a["d_model"], a["vocab_size"]
        head_dim = d // a["n_heads"]
        q = d * a["n_heads"] * head_dim
        kv = 2 * d * a["n_kv_heads"] * head_dim
        block = 2 * d + 2 * q + kv + 3 * d * a["mlp_hidden"]  # 2 RMSNorms, q/o, k/v, SwiGLU
        return v * d + a["n_layers"] * block + d + d * v  # embedding, blocks, norm, head
    if entry.get("family") == "torchvision":
        base = entry.get("num_params")
        if base is None:
            return None
        extra = int(a.get("num_classes", 1000)) - 1000
        per_class = TORCHVISION_PARAMS_PER_CLASS.get(name)
        if per_class is None:
            per_class = max(TORCHVISION_PARAMS_PER_CLASS.values()) if extra > 0 else 0
        return int(base) + per_class * extra
    return None


def check_param_limit(name: str, count: int | None, max_params: int) -> None:
    """ValueError with a sentence when ``count`` exceeds ``max_params`` (0: no limit)."""
    if max_params and count is not None and count > max_params:
        raise ValueError(
            f"{name} with these arguments has about {count:,} parameters; this server accepts "
            f"up to {max_params:,} (MAX_MODEL_PARAMS)."
        )


# --- memory of a job --------------------------------------------------------------------------

FLOAT_BYTES = 4  # models are built and trained in float32
NINO_CONTEXT = 5  # parameter snapshots a NiNo-accelerated run keeps (NowcastConfig.ctx)


def train_bytes_per_param(*, optimizer: str, accelerator: str, compare: bool) -> int:
    """Host memory a train job needs per model parameter, beyond activations and data.

    The initial model and the trained copy, the gradients, the optimizer's state (Adam: two
    moments, SGD: one momentum buffer), and for an accelerated run its snapshots plus the
    predicted parameters; a comparison run adds one more model and its gradients.
    """
    copies = 2 + 1 + (1 if optimizer == "sgd" else 2)
    if accelerator != "none":
        copies += NINO_CONTEXT + 1
        if compare:
            copies += 2
    return FLOAT_BYTES * copies


# A predict job holds the model, the predicted parameters, their CPU state dict and its
# serialised safetensors bytes.
PREDICT_BYTES_PER_PARAM = FLOAT_BYTES * 4


def memory_refusal(what: str, num_params: int, bytes_per_param: int, limit: int) -> str | None:
    """The sentence refusing a job that needs more than ``limit`` bytes; None when it fits
    (or ``limit`` is 0, no limit)."""
    needed = num_params * bytes_per_param
    if not limit or needed <= limit:
        return None
    return (
        f"This {what} needs about {_gigabytes(needed)} GB of memory for a model with "
        f"{num_params:,} parameters; a job on this server may use up to {_gigabytes(limit)} GB "
        "(JOB_MEMORY_LIMIT)."
    )


def _gigabytes(size: int) -> str:
    value = size / 1e9
    return f"{value:,.1f}" if value >= 0.1 else f"{value:.2g}"


def default_job_memory_limit(fraction: float = 0.75, meminfo: str = "/proc/meminfo") -> int:
    """``fraction`` of this machine's memory (``MemTotal``) in bytes; 0 (no limit) where the
    file cannot be read (not Linux)."""
    try:
        text = Path(meminfo).read_text(encoding="ascii")
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) * 1024 * fraction)
    return 0
