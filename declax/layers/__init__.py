"""declax layers: Trax-style layers and combinators as Flax Linen modules.

```python
import declax.layers as tl
model = tl.Serial(tl.Dense(8), tl.Relu(), tl.Dense(2), tl.LogSoftmax())
```
"""

from declax.layers.activations import *
from declax.layers.attention import *
from declax.layers.base import Layer, LayerError, summary, with_mode
from declax.layers.combinators import *
from declax.layers.control_flow import *
from declax.layers.convolution import *
from declax.layers.core import *
from declax.layers.metrics import *
from declax.layers.normalization import *
from declax.layers.rnn import *
