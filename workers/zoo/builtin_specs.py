"""Argument specifications of the built-in model families (pure data, no torch).

``make_catalog`` copies them into ``workers/catalog/models.json`` and ``validate_args`` checks user
arguments against them; the classes they build live in ``workers.zoo.builtin`` (which
re-exports ``BUILTIN_SPECS``).
"""

from __future__ import annotations

from typing import Any

# Arguments several families share.
NUM_CLASSES: dict[str, Any] = {
    "type": "int",
    "min": 1,
    "max": 100_000,
    "help": "Number of output classes.",
}
IMAGE_SIZE: dict[str, Any] = {
    "type": "int",
    "min": 2,
    "max": 1024,
    "help": "Height and width of the (square) input image.",
}
IN_CHANNELS: dict[str, Any] = {
    "type": "int",
    "min": 1,
    "max": 64,
    "help": "Channels of the input image.",
}
VOCAB_SIZE: dict[str, Any] = {
    "type": "int",
    "min": 2,
    "max": 1_000_000,
    "help": "Number of token ids.",
}

# One spec per family. "default_args" must satisfy "args"; "description" is shown in the UI.
BUILTIN_SPECS: dict[str, dict[str, Any]] = {
    "mlp": {
        "description": "Multi-layer perceptron with ReLU activations; flattens its input first.",
        "input_dtype": "float32",
        "default_args": {"in_features": 784, "hidden": [128, 64], "num_classes": 10},
        "args": {
            "in_features": {
                "type": "int",
                "min": 1,
                "max": 1_000_000,
                "help": "Number of input features (784 means a 1x28x28 image).",
            },
            "hidden": {
                "type": "list[int]",
                "min": 1,
                "max": 65_536,
                "min_len": 0,
                "max_len": 16,
                "help": "Width of each hidden layer, input to output.",
            },
            "num_classes": NUM_CLASSES,
        },
    },
    "cnn": {
        "description": (
            "NiNo 'FM/16' convolutional network: 3x3 convolutions with ReLU (the first with "
            "stride 2), global average pooling and a linear classifier (14,378 parameters "
            "with the default arguments)."
        ),
        "input_dtype": "float32",
        "default_args": {
            "in_channels": 1,
            "channels": [16, 32, 32],
            "num_classes": 10,
            "image_size": 28,
        },
        "args": {
            "in_channels": IN_CHANNELS,
            "channels": {
                "type": "list[int]",
                "min": 1,
                "max": 4096,
                "min_len": 1,
                "max_len": 16,
                "help": "Output channels of each 3x3 convolution.",
            },
            "num_classes": NUM_CLASSES,
            "image_size": IMAGE_SIZE,
        },
    },
    "cnn_residual": {
        "description": (
            "Small ResNet-like network: a strided 3x3 stem convolution, residual blocks of two "
            "3x3 convolutions each, global average pooling and a linear classifier."
        ),
        "input_dtype": "float32",
        "default_args": {
            "in_channels": 1,
            "width": 16,
            "num_blocks": 2,
            "num_classes": 10,
            "image_size": 28,
        },
        "args": {
            "in_channels": IN_CHANNELS,
            "width": {
                "type": "int",
                "min": 1,
                "max": 4096,
                "help": "Channels of every convolution.",
            },
            "num_blocks": {
                "type": "int",
                "min": 0,
                "max": 32,
                "help": "Number of residual blocks.",
            },
            "num_classes": NUM_CLASSES,
            "image_size": IMAGE_SIZE,
        },
    },
    "transformer": {
        "description": (
            "GPT-2-style character-level decoder: token and learned position embeddings, "
            "pre-LayerNorm blocks with causal self-attention and a GELU MLP, untied output head."
        ),
        "input_dtype": "int64",
        "default_args": {
            "vocab_size": 96,
            "context": 128,
            "d_model": 24,
            "n_layers": 3,
            "n_heads": 2,
            "mlp_ratio": 4,
        },
        "args": {
            "vocab_size": VOCAB_SIZE,
            "context": {
                "type": "int",
                "min": 1,
                "max": 65_536,
                "help": "Maximum sequence length (size of the position embedding).",
            },
            "d_model": {
                "type": "int",
                "min": 1,
                "max": 16_384,
                "help": "Embedding width; must be divisible by n_heads.",
            },
            "n_layers": {
                "type": "int",
                "min": 0,
                "max": 128,
                "help": "Number of transformer blocks.",
            },
            "n_heads": {
                "type": "int",
                "min": 1,
                "max": 256,
                "help": "Attention heads per block.",
            },
            "mlp_ratio": {
                "type": "int",
                "min": 1,
                "max": 16,
                "help": "Hidden width of the MLP as a multiple of d_model.",
            },
        },
    },
    "llama": {
        "description": (
            "Llama-style decoder: token embedding, pre-RMSNorm blocks with rotary (RoPE) "
            "grouped-query causal attention and a SwiGLU MLP, untied output head, no biases."
        ),
        "input_dtype": "int64",
        "default_args": {
            "vocab_size": 96,
            "context": 128,
            "d_model": 32,
            "n_layers": 2,
            "n_heads": 4,
            "n_kv_heads": 2,
            "mlp_hidden": 64,
        },
        "args": {
            "vocab_size": VOCAB_SIZE,
            "context": {
                "type": "int",
                "min": 1,
                "max": 65_536,
                "help": "Maximum sequence length (size of the rotary position table).",
            },
            "d_model": {
                "type": "int",
                "min": 2,
                "max": 16_384,
                "help": "Embedding width; d_model / n_heads must be even (rotary pairs).",
            },
            "n_layers": {
                "type": "int",
                "min": 0,
                "max": 128,
                "help": "Number of transformer blocks.",
            },
            "n_heads": {
                "type": "int",
                "min": 1,
                "max": 256,
                "help": "Query heads per block.",
            },
            "n_kv_heads": {
                "type": "int",
                "min": 1,
                "max": 256,
                "help": "Key/value heads per block (grouped-query attention); divides n_heads.",
            },
            "mlp_hidden": {
                "type": "int",
                "min": 1,
                "max": 65_536,
                "help": "Hidden width of the SwiGLU MLP.",
            },
        },
    },
}
