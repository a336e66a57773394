"""declax layers: Trax-style layers and combinators as Flax Linen modules.

```python
import declax.layers as tl
model = tl.Serial(tl.Dense(8), tl.Relu(), tl.Dense(2), tl.LogSoftmax())
```

The public names are those imported below; `__all__` is built from them.
"""

import types as _types

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
from declax.layers.activations_extra import (
    Exp,
    HardSigmoid,
    Log,
    LogSumExp,
    ThresholdedLinearUnit,
    ThresholdToBinary,
)
from declax.layers.assert_shape import (
    AssertFunction,
    AssertShape,
    ShapeAssertionError,
    assert_shape,
)
from declax.layers.attention import Attention, AttentionQKV, CausalAttention, PaddingMask
from declax.layers.attention_extra import (
    ConfigurableAttention,
    DotProductCausalAttention,
    EncoderDecoderMask,
    MergeHeads,
    PureAttention,
    SplitIntoHeads,
)
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
from declax.layers.convolution_extra import (
    CausalConv,
    CausalDepthwiseConv,
    LocallyConnected1d,
)
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
    StopGradient,
    Sum,
    ToFloat,
)
from declax.layers.custom_grad import has_custom_backward
from declax.layers.deconvolution import ConvTranspose
from declax.layers.efficient_attention import EncDecAttention, SelfAttention
from declax.layers.errors import LayerArgumentError
from declax.layers.filter_response_norm import FilterResponseNorm
from declax.layers.linen import Linen, LinenArityError
from declax.layers.lsh_attention import LSHSelfAttention, PureLSHSelfAttention
from declax.layers.lsh_ff import LSHFF
from declax.layers.lsh_wrappers import (
    LSHWrapperError,
    MixedLSHSelfAttention,
    PureLSHSelfAttentionWrapper,
)
from declax.layers.math_fns import (
    log_gaussian_diag_pdf,
    log_gaussian_pdf,
    log_softmax,
    one_hot,
)
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
from declax.layers.metrics_extra import (
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
from declax.layers.normalization import BatchNorm, LayerNorm
from declax.layers.position_encodings import (
    AxialPositionalEncoding,
    FixedBasePositionalEncoding,
    InfinitePositionalEncoding,
    Rotate,
    SinCosPositionalEncoding,
    TimeBinPositionalEncoding,
)
from declax.layers.reversible import (
    ReversibleConcatenatePair,
    ReversibleHalfResidual,
    ReversibleLayer,
    ReversibleReshape,
    ReversibleSelect,
    ReversibleSerial,
    ReversibleSwap,
)
from declax.layers.rnn import GRU, LSTM, GRUCell, LSTMCell
from declax.layers.rnn_extra import SRU, ConvGRUCell, GeneralGRUCell, MakeZeroState
from declax.layers.sequence import PositionalEncoding, ShiftRight
from declax.layers.utility import (
    Cache,
    FlattenList,
    PrintShape,
    RandomUniform,
    SummaryImage,
    SummaryScalar,
    Weights,
)

__all__ = sorted(name for name, value in globals().items()
                 if not name.startswith("_") and not isinstance(value, _types.ModuleType))
