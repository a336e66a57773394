"""Moving from Trax: Trax's models under Trax's arguments, and Trax checkpoints as Linen variables.

```python
from declax.trax_compat import init_from_file, model_from_trax
model = model_from_trax('MLP', layer_widths=(32, 16, 5))
variables = init_from_file(model, '../shared/trax_checkpoints/mlp/model.pkl.gz')
```

See docs/trax.md for the migration guide.
"""

from declax.trax_compat.files import ShapeDtype, TraxCheckpointError, read_checkpoint
from declax.trax_compat.loading import TraxRun, init_from_file, trax_adam
from declax.trax_compat.models import TRAX_MODELS, TraxModelError, model_from_trax

__all__ = ["TRAX_MODELS", "ShapeDtype", "TraxCheckpointError", "TraxModelError", "TraxRun",
           "init_from_file", "model_from_trax", "read_checkpoint", "trax_adam"]
