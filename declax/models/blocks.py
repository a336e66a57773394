"""Building blocks shared by the model zoo: named blocks with sharding constraints and remat.

`ScanLayers` (`n_layers` copies of a block as one `jax.lax.scan`) lives beside `Scan` in
`declax.layers.control_flow` and is importable from here too.

```python
block = Block(tl.Residual(tl.LayerNorm(), tl.Dense(16)), block_name='MyBlock',
              input_axes=('batch', 'length', 'embed'), remat_policy='dots')
deep = ScanLayers(block, n_layers=12)          # prints as ScanLayers_12[ MyBlock[ ... ] ]
```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import declax.layers as tl
from declax.layers.combinators import positional_layers
from declax.layers.control_flow import ScanLayers  # its home; importable from here as before
from declax.layers.partitioning import constrain
from declax.layers.stack import run_serial

__all__ = ["REMAT_POLICIES", "Block", "ScanLayers", "compute_dtype", "remat_policy_fn"]

# `remat_policy` names -> what `jax.checkpoint` may keep from the forward pass (None: nothing).
REMAT_POLICIES: dict[str, Callable | None] = {
    "full": None,
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}

Axes = Sequence[str | None] | None


def remat_policy_fn(policy: str | Callable | None) -> Callable | None:
  """The `jax.checkpoint` policy for a `remat_policy` name (or a policy function itself)."""
  if policy is None or callable(policy):
    return policy
  if policy not in REMAT_POLICIES:
    raise ValueError(f"remat_policy must be None, a jax.checkpoint policy or one of "
                     f"{sorted(REMAT_POLICIES)}, got {policy!r}")
  return REMAT_POLICIES[policy]


@positional_layers()  # Block(a, b, c, block_name=...), as Serial
class Block(tl.Serial):
  """A `Serial` with a printed name, activation sharding constraints and optional remat.

  `input_axes` constrains the top of the stack on entry; `output_axes[i]` (if given, one entry
  per sublayer, None to skip) constrains the first output of sublayer `i`. With `remat_policy`
  (`'full'`, `'dots'`, `'dots_no_batch'`, ... see `REMAT_POLICIES`) the block's activations
  are recomputed in the backward pass instead of stored; its parameters stay where they are.

  ```python
  ff = Block(tl.Dense(64), tl.Relu(), tl.Dense(16), block_name='FeedForward',
             output_axes=(('batch', 'length', 'mlp'), None, ('batch', 'length', 'embed')))
  ```
  """

  block_name: str = "Block"
  input_axes: Axes = None
  output_axes: tuple = ()
  remat_policy: Any = None
  prevent_cse: bool = True

  def __post_init__(self):
    if self.output_axes and len(self.output_axes) != len(self.layers):
      raise ValueError(f"{self.block_name}: output_axes has {len(self.output_axes)} entries for "
                       f"{len(self.layers)} sublayers")
    remat_policy_fn(self.remat_policy)  # validate early
    super().__post_init__()

  @property
  def default_label(self) -> str:
    return self.block_name

  def _run(self, *items):
    if self.input_axes is not None and items:
      items = (constrain(items[0], self.input_axes), *items[1:])
    return run_serial(self, self.layers, items, on_outputs=self._constrain_outputs)

  def _constrain_outputs(self, i: int, outputs: tuple) -> tuple:
    axes = self.output_axes[i] if self.output_axes else None
    if axes is None or not outputs:
      return outputs
    return (constrain(outputs[0], axes), *outputs[1:])

  def forward(self, *items):
    if self.remat_policy is None:
      return self._run(*items)
    run = nn.checkpoint(type(self)._run, policy=remat_policy_fn(self.remat_policy),
                        prevent_cse=self.prevent_cse)
    return run(self, *items)


def compute_dtype(dtype: Any) -> Any:
  """A model's `dtype` argument as a jnp dtype: None (float32 compute) or e.g. `'bfloat16'`.

  Parameters stay in `param_dtype` (float32); only the computation runs in `dtype`.
  """
  return None if dtype is None else jnp.dtype(dtype)
