"""Starting a run from trained weights: `config.model_init` (big_vision's `model_init`, Trax's
`init_checkpoint`).

The source is a declax work directory (or its `checkpoints` folder, or one step folder in it):
the parameters of its newest (or given) checkpoint; or a Trax checkpoint (`model.pkl.gz`), read
by `declax.trax_compat.init_from_file`. Only the parameters are taken: the optimizer state, step
and data position start afresh. Every parameter of the new model must be found with the same
shape and dtype, except those matching a `skip` pattern (e.g. a new classification head), which
keep their random initialisation; anything else raises `ModelInitError` listing the paths.

```python
loop = Loop(model, task, init_params=model_init.loader('/tmp/pretrained', skip=('layers_5/.*',)))
```
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from declax.errors import DeclaxError
from declax.training.checkpoints import _listing, compare_trees
from declax.training.state import path_name, tree_signature

__all__ = ["ModelInitError", "load_params", "loader"]


class ModelInitError(DeclaxError, ValueError):
  """`model_init` weights that do not fit the new model; lists the differing parameter paths."""


def _flat(tree: Any) -> dict[str, Any]:
  return {path_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _declax_params(source: str, step: int | None) -> dict[str, np.ndarray]:
  """The `params` of a declax checkpoint, as `{path: array}` (read on the host, no target)."""
  import orbax.checkpoint as ocp

  directory = os.path.abspath(source)
  if os.path.isdir(os.path.join(directory, "checkpoints")):
    directory = os.path.join(directory, "checkpoints")
  if os.path.isdir(os.path.join(directory, "state")):  # one step's folder
    step_dir = directory
  else:
    steps = sorted(int(n) for n in os.listdir(directory) if n.isdigit())
    if not steps:
      raise ModelInitError(f"model_init: no checkpoint in {directory} (a declax work directory, "
                           "its checkpoints folder, or a Trax model.pkl.gz)")
    if step is not None and step not in steps:
      raise ModelInitError(f"model_init: no step {step} in {directory}; it holds {steps}")
    step_dir = os.path.join(directory, str(step if step is not None else steps[-1]))
  with ocp.StandardCheckpointer() as checkpointer:
    stored = checkpointer.restore(os.path.join(step_dir, "state"))
  if "params" not in stored:
    raise ModelInitError(f"model_init: {step_dir} holds no parameters (not a declax checkpoint)")
  return {k: np.asarray(v) for k, v in _flat(stored["params"]).items()}


def _trax_params(source: str, model: Any, inputs: Sequence[Any]) -> dict[str, np.ndarray]:
  try:
    from declax.trax_compat import init_from_file
  except ImportError as error:
    raise ModelInitError(f"model_init: {source} is a Trax checkpoint, which needs "
                         f"declax.trax_compat ({error})") from error
  variables = init_from_file(model, source, *inputs)
  return {k: np.asarray(v) for k, v in _flat(variables["params"]).items()}


def load_params(source: str | os.PathLike, abstract_params: Any, *, skip: Sequence[str] = (),
                step: int | None = None, model: Any = None,
                inputs: Sequence[Any] = ()) -> dict[str, np.ndarray]:
  """`{path: array}` for every parameter of `abstract_params` not matching a `skip` regex.

  `model` and `inputs` (shapes of its inputs) are needed for a Trax checkpoint only.
  """
  source = os.fspath(source)
  if not os.path.exists(source):
    raise ModelInitError(f"model_init: {source} does not exist")
  if source.endswith((".pkl.gz", ".pkl")):
    loaded = _trax_params(source, model, inputs)
  else:
    loaded = _declax_params(source, step)
  patterns = [re.compile(p) for p in skip]
  skipped = lambda path: any(p.fullmatch(path) for p in patterns)
  expected = {k: v for k, v in tree_signature(abstract_params).items() if not skipped(k)}
  stored = {k: (v.shape, str(v.dtype)) for k, v in loaded.items() if not skipped(k)}
  missing, unexpected, mismatched = compare_trees(stored, expected)
  if missing or unexpected or mismatched:
    lines = [f"model_init: the parameters in {source} do not fit the model; nothing was "
             "loaded. Add the paths to keep freshly initialised to config.model_load.skip "
             "(regular expressions, e.g. 'layers_5/.*' for a new head)."]
    lines += _listing("in the model but not in model_init", missing)
    lines += _listing("in model_init but not in the model", unexpected)
    lines += _listing("different shape/dtype (model_init vs model)",
                      [f"{p}: {c[1]}{list(c[0])} vs {m[1]}{list(m[0])}" for p, c, m in mismatched])
    raise ModelInitError("\n".join(lines))
  return {k: loaded[k] for k in expected}


def loader(source: str | os.PathLike, *, skip: Sequence[str] = (), step: int | None = None,
           model: Any = None, inputs: Sequence[Any] = ()) -> Callable[[Any], dict]:
  """`abstract_params -> {path: array}` for `Loop(init_params=...)` (see `load_params`)."""
  return lambda abstract: load_params(source, abstract, skip=skip, step=step, model=model,
                                      inputs=inputs)
