"""Op tables for the architecture graph: which autograd ops become which GHN primitive.

Autograd node classes are named ``<Op>Backward<k>`` (``ConvolutionBackward0``,
``NativeBatchNormBackward0``, ...); ``op_name`` strips the suffix and the tables below use what
is left. Every op is in exactly one of three groups:

* ops that own parameters (convolution, matmul, norms, embedding, an add of a learned tensor);
* ops that become a node of their own (pools, add, cat, softmax/attention, squeeze-excitation);
* parameter-free glue that is folded away (activations, views, dropout, arithmetic, ...).

Anything else is reported by name in ``ArchGraph.unknown_ops`` and folded like glue, so the
graph stays connected and the gap is visible rather than silently dropped.
"""

from __future__ import annotations

import re

# The 15 GHN primitives, in the index order the published GHN-2/GHN-3 embeddings use.
PRIMITIVES: tuple[str, ...] = (
    "max_pool",
    "avg_pool",
    "sep_conv",
    "dil_conv",
    "conv",
    "msa",
    "cse",
    "sum",
    "concat",
    "input",
    "bias",
    "bn",
    "ln",
    "pos_enc",
    "glob_avg",
)
PRIMITIVE_INDEX: dict[str, int] = {name: i for i, name in enumerate(PRIMITIVES)}

_BACKWARD_SUFFIX = re.compile(r"Backward\d*$")


def op_name(fn: object) -> str:
    """The op an autograd node stands for: ``ConvolutionBackward0`` -> ``Convolution``."""
    return _BACKWARD_SUFFIX.sub("", type(fn).__name__)


# Ops whose parameters are convolution kernels (typed further by groups and dilation).
CONV_OPS = frozenset(
    """
    Convolution ConvolutionBackwardOverrideable MkldnnConvolution CudnnConvolution
    CudnnConvolutionTranspose MiopenConvolution MiopenDepthwiseConvolution
    ConvDepthwise2D ConvDepthwise3D SlowConv2D SlowConv3D SlowConvDilated2D SlowConvDilated3D
    SlowConvTranspose2D SlowConvTranspose3D ThnnConv2D
    """.split()
)
# Ops whose 2-D parameter is a dense weight (Linear, MultiheadAttention projections).
MATMUL_OPS = frozenset("Addmm Mm Bmm Baddbmm Addbmm Matmul Linear MkldnnLinear Addmv Mv".split())
BATCH_NORM_OPS = frozenset(
    """
    NativeBatchNorm NativeBatchNormLegitNoTraining NativeBatchNormLegit
    NativeBatchNormLegitFunctional CudnnBatchNorm MiopenBatchNorm BatchNorm
    """.split()
)
# GroupNorm(1, C) is a LayerNorm over (C, H, W), so group norms read as ``ln``.
LAYER_NORM_OPS = frozenset("NativeLayerNorm NativeGroupNorm FusedRmsNorm LayerNorm".split())
EMBEDDING_OPS = frozenset("Embedding EmbeddingDenseBackward EmbeddingBag".split())
# An elementwise add of a learned tensor: a linear layer's bias (1-D) or a positional encoding.
ADD_OPS = frozenset(("Add",))

# Ops that stand for a node of their own (when they have no parameters).
OP_PRIMITIVES: dict[str, str] = {
    "MaxPool2DWithIndices": "max_pool",
    "MaxPool3DWithIndices": "max_pool",
    "MaxPool2D": "max_pool",
    "MaxPool1D": "max_pool",
    "AdaptiveMaxPool2D": "max_pool",
    "AdaptiveMaxPool1D": "max_pool",
    "AvgPool2D": "avg_pool",
    "AvgPool3D": "avg_pool",
    "AvgPool1D": "avg_pool",
    "Mean": "glob_avg",
    "AdaptiveAvgPool2D": "glob_avg",
    "AdaptiveAvgPool3D": "glob_avg",
    "AdaptiveAvgPool1D": "glob_avg",
    "MkldnnAdaptiveAvgPool2D": "glob_avg",
    # Attention: an explicit softmax (torch <= 2.0, need_weights=True) or a fused kernel.
    "Softmax": "msa",
    "SafeSoftmax": "msa",
    "ScaledDotProductFlashAttentionForCpu": "msa",
    "ScaledDotProductFlashAttention": "msa",
    "ScaledDotProductEfficientAttention": "msa",
    "ScaledDotProductCudnnAttention": "msa",
    "ScaledDotProductFusedAttentionOverrideable": "msa",
    "FlashAttention": "msa",
    "EfficientAttention": "msa",
    "Add": "sum",
    "Cat": "concat",
    "Stack": "concat",
    # Mul becomes ``cse`` only when one operand is a sigmoid-style gate (squeeze-excitation).
    "Mul": "cse",
}
# Activations that turn a branch into a multiplicative gate.
GATE_OPS = frozenset("Sigmoid Hardsigmoid Silu".split())

# Parameter-free ops that reshape, select or transform values elementwise: folded away.
GLUE_OPS = frozenset(
    """
    Relu Relu6 Hardtanh Gelu Silu Sigmoid Hardsigmoid Hardswish Tanh Elu Selu Celu LeakyRelu
    Mish Softplus Softshrink Hardshrink Threshold PreluKernel Prelu Rrelu LogSigmoid Glu
    View UnsafeView Reshape ReshapeAlias Alias Permute Transpose T Expand Unsqueeze Squeeze
    Clone Contiguous Select Slice SliceScatter SelectScatter Split SplitWithSizes Unbind Narrow
    Chunk Index IndexSelect Gather Take ToCopy ToDense Flatten Unflatten AsStrided Lift
    NativeDropout Dropout FeatureDropout AlphaDropout Fill Copy Copysign
    Mul Div Sub Neg Pow Sqrt Rsqrt Exp Log Log1p Abs Clamp ClampMin ClampMax Reciprocal
    Add Sum Prod Max Min Amax Amin Var Std VarMean StdMean Norm LinalgVectorNorm Cumsum
    Where MaskedFill MaskedScatter IndexPut IndexAdd Scatter ScatterAdd
    Mm Bmm Baddbmm Addmm Addbmm Matmul Mv Addmv Dot Einsum Linear
    ConstantPadNd ReflectionPad1D ReflectionPad2D ReplicationPad1D ReplicationPad2D Roll Flip
    Repeat RepeatInterleave Tile UpsampleBilinear2D UpsampleNearest2D UpsampleBicubic2D
    UpsampleNearest1D UpsampleLinear1D PixelShuffle PixelUnshuffle ChannelShuffle
    Softmax SafeSoftmax LogSoftmax Tril Triu Diagonal Movedim Cat Stack Mean Erf Lerp
    NativeChannelShuffle StochasticDepth CopySlices Zero Trace Cos Sin Atan2 Sign Sgn Floor
    Ceil Round Frac
    """.split()
)
