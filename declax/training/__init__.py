"""declax training: Trax's `Loop`/`TrainTask`/`EvalTask` on Optax, Orbax and a device mesh.

```python
from declax.training import EvalTask, Loop, TrainTask, make_optimizer, make_schedule
```
"""

from declax.training.callbacks import EarlyStopping, TrainingStepCallback
from declax.training.checkpoints import (
    CheckpointCorruptedError,
    Checkpointer,
    CheckpointMismatchError,
    CheckpointSaveError,
)
from declax.training.config_schema import ConfigError
from declax.training.loop import Loop
from declax.training.loop_options import LoopOptions
from declax.training.metric_writers import (
    ConsoleWriter,
    JsonlWriter,
    MetricWriter,
    MultiWriter,
    TensorBoardWriter,
    create_default_writer,
)
from declax.training.model_init import ModelInitError
from declax.training.optimizers import (
    current_learning_rate,
    decay_mask,
    make_optimizer,
    make_schedule,
)
from declax.training.reporting import NonFiniteInputError, NonFiniteLossError
from declax.training.state import TrainState
from declax.training.tasks import EvalTask, TrainTask
from declax.training.workdir import WorkdirError, WorkdirLockedError

__all__ = [
    "CheckpointCorruptedError", "CheckpointMismatchError", "CheckpointSaveError", "Checkpointer",
    "ConfigError", "ConsoleWriter", "EarlyStopping", "EvalTask", "JsonlWriter", "Loop",
    "LoopOptions", "MetricWriter", "ModelInitError", "MultiWriter", "NonFiniteInputError",
    "NonFiniteLossError", "TensorBoardWriter", "TrainState", "TrainTask", "TrainingStepCallback",
    "WorkdirError", "WorkdirLockedError", "create_default_writer",
    "current_learning_rate", "decay_mask", "make_optimizer", "make_schedule",
]
