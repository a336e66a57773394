"""`summary`: a table of every layer of a model (path, arity, output shapes, parameters).

```python
print(declax.summary(model, jnp.zeros((8, 784))))
```
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from declax.layers.attention_kernel import record_attention_choices
from declax.layers.base import Layer
from declax.layers.stack import describe, unpack
from declax.text_table import format_table


def _param_count(tree: Any) -> int:
  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(nn.unbox(tree))))


def summary(model: nn.Module, x: Any, *, rngs: Any = None, mesh: Any = None,
            rules: Any = None) -> str:
  """A table of every layer: path, header, arity, output shapes/dtypes and parameter count,
  then which attention computation runs (`attention: cpu (CPU, float32: declax's formulation)`).

  Nothing is computed for real (the model is traced with `jax.eval_shape`). With `mesh` (a
  `jax.sharding.Mesh`), a second table lists every parameter's `PartitionSpec` and bytes per
  device under the logical axis `rules` (default: `declax.sharding` defaults).

  ```python
  print(declax.summary(model, jnp.zeros((8, 784))))
  ```
  """
  rows: list[tuple] = []

  def record(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, Layer):
      return next_fun(*args, **kwargs)
    row = len(rows)
    rows.append(None)  # reserve the slot so parents are listed before their children
    result = next_fun(*args, **kwargs)
    path = "/".join(module.scope.path) or "(root)"
    outputs = unpack(result) if module.n_out != 1 else (result,)
    rows[row] = (path, module.header, f"{module.n_in}->{module.n_out}", describe(outputs))
    return result

  rng = jax.random.PRNGKey(0) if rngs is None else rngs

  def init(stack):
    with nn.intercept_methods(record):
      return model.init(rng, stack)

  with record_attention_choices() as attention:
    if mesh is None:
      variables = jax.eval_shape(init, x)
    else:  # parameters keep their logical axis names only when created under axis rules
      from declax.sharding import rules_from_config  # late import: sharding needs a mesh anyway

      with nn.logical_axis_rules(rules_from_config(rules)):
        variables = jax.eval_shape(init, x)
  params = nn.unbox(variables.get("params", {}))
  seen = set()
  table = []
  for path, head, arity, outputs in rows:
    if path in seen:  # a shared layer is listed once
      continue
    seen.add(path)
    subtree = params
    for part in ([] if path == "(root)" else path.split("/")):
      subtree = subtree.get(part, {}) if isinstance(subtree, dict) else {}
    table.append((path, head, arity, outputs, f"{_param_count(subtree):,}"))
  lines = [format_table(("path", "layer", "n_in->n_out", "outputs", "params"), table),
           f"Total parameters: {_param_count(params):,}"]
  if attention:  # which computation each attention runs (select_attention_implementation)
    lines.append("attention: " + "; ".join(str(choice) for choice in attention))
  if mesh is not None:
    from declax.sharding import sharding_table  # late import: sharding needs a mesh anyway

    lines.append("")
    lines.append(sharding_table(variables.get("params", {}), mesh, rules))
  return "\n".join(lines)
