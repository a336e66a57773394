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
