"""declax layers: Trax-style layers and combinators as Flax Linen modules.

```python
import declax.layers as tl
model = tl.Serial(tl.Dense(8), tl.Relu(), tl.Dense(2), tl.LogSoftmax())
```
"""

from declax.layers.activations import (
    Elu,
    FastGelu,
    Gelu,
    Glu,
    HardTanh,
    LeakyRelu,
    LogSoftmax,
    ParametricRelu,
    Relu,
    Selu,
    Sigmoid,
    Softmax,
    Softplus,
    Swish,
    Tanh,
)
from declax.layers.attention import Attention, AttentionQKV, CausalAttention, PaddingMask
from declax.layers.base import Layer, LayerError, summary, with_mode
from declax.layers.combinators import (
    Add,
    Branch,
    Concatenate,
    Drop,
    Dup,
    Fn,
    Gate,
    Multiply,
    Parallel,
    Residual,
    Select,
    Serial,
    SerialWithSideOutputs,
    Split,
    SubtractTop,
    Swap,
)
from declax.layers.control_flow import BatchLeadingAxes, Bidirectional, Chunk, Cond, Scan
from declax.layers.convolution import AvgPool, Conv, MaxPool, SumPool
from declax.layers.core import (
    ArgMax,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    Max,
    Mean,
    Min,
    Negate,
    PositionalEncoding,
    ShiftRight,
    StopGradient,
    Sum,
    ToFloat,
)
from declax.layers.linen import Linen, LinenArityError
from declax.layers.metrics import (
    Accuracy,
    BinaryCrossEntropyLoss,
    CategoryAccuracy,
    CategoryCrossEntropy,
    CrossEntropyLoss,
    L2Loss,
    WeightedCategoryAccuracy,
    WeightedCategoryCrossEntropy,
)
from declax.layers.normalization import BatchNorm, LayerNorm
from declax.layers.rnn import GRU, LSTM, GRUCell, LSTMCell

__all__ = [
    # combinators
    "Add", "BatchLeadingAxes", "Bidirectional", "Branch", "Chunk", "Concatenate", "Cond", "Drop",
    "Dup", "Fn", "Gate", "Multiply", "Parallel", "Residual", "Scan", "Select", "Serial",
    "SerialWithSideOutputs", "Split", "SubtractTop", "Swap",
    # layers
    "ArgMax", "Attention", "AttentionQKV", "AvgPool", "BatchNorm", "CausalAttention", "Conv",
    "Dense", "Dropout", "Embedding", "Flatten", "GRU", "GRUCell", "LSTM", "LSTMCell", "LayerNorm",
    "Max", "MaxPool", "Mean", "Min", "Negate", "PaddingMask", "PositionalEncoding", "ShiftRight",
    "StopGradient", "Sum", "SumPool", "ToFloat",
    # activations
    "Elu", "FastGelu", "Gelu", "Glu", "HardTanh", "LeakyRelu", "LogSoftmax", "ParametricRelu",
    "Relu", "Selu", "Sigmoid", "Softmax", "Softplus", "Swish", "Tanh",
    # losses and metrics
    "Accuracy", "BinaryCrossEntropyLoss", "CategoryAccuracy", "CategoryCrossEntropy",
    "CrossEntropyLoss", "L2Loss", "WeightedCategoryAccuracy", "WeightedCategoryCrossEntropy",
    # base
    "Layer", "LayerError", "summary", "with_mode",
    # Linen interop
    "Linen", "LinenArityError",
]

# Efficient attention (Reformer)
from declax.layers.efficient_attention import EncDecAttention, SelfAttention  # noqa: E402
from declax.layers.lsh_attention import LSHSelfAttention, PureLSHSelfAttention  # noqa: E402
from declax.layers.lsh_ff import LSHFF  # noqa: E402
from declax.layers.lsh_wrappers import (  # noqa: E402
    LSHWrapperError,
    MixedLSHSelfAttention,
    PureLSHSelfAttentionWrapper,
)

__all__ += ["EncDecAttention", "LSHFF", "LSHSelfAttention", "LSHWrapperError",
            "MixedLSHSelfAttention", "PureLSHSelfAttention", "PureLSHSelfAttentionWrapper",
            "SelfAttention"]

# Reversible layers and position encodings (Reformer)
from declax.layers.position_encodings import (  # noqa: E402
    AxialPositionalEncoding,
    FixedBasePositionalEncoding,
    InfinitePositionalEncoding,
    Rotate,
    SinCosPositionalEncoding,
    TimeBinPositionalEncoding,
)
from declax.layers.reversible import (  # noqa: E402
    ReversibleConcatenatePair,
    ReversibleHalfResidual,
    ReversibleLayer,
    ReversibleReshape,
    ReversibleSelect,
    ReversibleSerial,
    ReversibleSwap,
)

__all__ += [
    "AxialPositionalEncoding", "FixedBasePositionalEncoding", "InfinitePositionalEncoding",
    "ReversibleConcatenatePair", "ReversibleHalfResidual", "ReversibleLayer", "ReversibleReshape",
    "ReversibleSelect", "ReversibleSerial", "ReversibleSwap", "Rotate", "SinCosPositionalEncoding",
    "TimeBinPositionalEncoding",
]
# Trax compatibility: more of Trax's layers, metrics and functions under Trax's names.
from declax.layers.activations_extra import (  # noqa: E402
    Exp,
    HardSigmoid,
    Log,
    LogSumExp,
    ThresholdedLinearUnit,
    ThresholdToBinary,
)
from declax.layers.custom_grad import has_custom_backward  # noqa: E402
from declax.layers.math_fns import (  # noqa: E402
    log_gaussian_diag_pdf,
    log_gaussian_pdf,
    log_softmax,
    one_hot,
)
from declax.layers.metrics_extra import (  # noqa: E402
    BinaryCrossEntropy,
    BinaryCrossEntropySum,
    CrossEntropySum,
    MacroAveragedFScore,
    MaskedSequenceAccuracy,
    SequenceAccuracy,
    SigmoidBinaryCrossEntropyLoss,
    SmoothL1Loss,
    WeightedFScore,
    WeightedSum,
)
from declax.layers.utility import (  # noqa: E402
    Cache,
    FlattenList,
    PrintShape,
    RandomUniform,
    SummaryImage,
    SummaryScalar,
    Weights,
)

__all__ += [
    "BinaryCrossEntropy", "BinaryCrossEntropySum", "Cache", "CrossEntropySum", "Exp",
    "FlattenList", "HardSigmoid", "Log", "LogSumExp", "MacroAveragedFScore",
    "MaskedSequenceAccuracy", "PrintShape", "RandomUniform", "SequenceAccuracy",
    "SigmoidBinaryCrossEntropyLoss", "SmoothL1Loss", "SummaryImage", "SummaryScalar",
    "ThresholdToBinary", "ThresholdedLinearUnit", "WeightedFScore", "WeightedSum", "Weights",
    "has_custom_backward", "log_gaussian_diag_pdf", "log_gaussian_pdf", "log_softmax", "one_hot",
]
from declax.layers.assert_shape import (  # noqa: E402
    AssertFunction,
    AssertShape,
    ShapeAssertionError,
    assert_shape,
)
from declax.layers.attention_extra import (  # noqa: E402
    ConfigurableAttention,
    DotProductCausalAttention,
    EncoderDecoderMask,
    MergeHeads,
    PureAttention,
    SplitIntoHeads,
)
from declax.layers.convolution_extra import (  # noqa: E402
    CausalConv,
    CausalDepthwiseConv,
    LocallyConnected1d,
)
from declax.layers.deconvolution import ConvTranspose  # noqa: E402
from declax.layers.filter_response_norm import FilterResponseNorm  # noqa: E402
from declax.layers.rnn_extra import SRU, ConvGRUCell, GeneralGRUCell, MakeZeroState  # noqa: E402

__all__ += [
    "AssertFunction", "AssertShape", "CausalConv", "CausalDepthwiseConv", "ConfigurableAttention",
    "ConvGRUCell", "ConvTranspose", "DotProductCausalAttention", "EncoderDecoderMask",
    "FilterResponseNorm", "GeneralGRUCell", "LocallyConnected1d", "MakeZeroState", "MergeHeads",
    "PureAttention", "SRU", "ShapeAssertionError", "SplitIntoHeads", "assert_shape",
]
from declax.layers.argument_errors import LayerArgumentError  # noqa: E402

__all__ += ["LayerArgumentError"]
