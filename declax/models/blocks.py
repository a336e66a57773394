"""Building blocks shared by the model zoo: named blocks with sharding constraints and remat, and
`ScanLayers`, which runs `n_layers` copies of a block as one `jax.lax.scan`.

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
from declax.layers.base import Layer, constrain

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
    stack = list(items)
    if self.input_axes is not None and stack:
      stack[0] = constrain(stack[0], self.input_axes)
    for i, layer in enumerate(self.layers):
      outputs = list(self.call_child(layer, stack[: layer.n_in]))
      axes = self.output_axes[i] if self.output_axes else None
      if axes is not None and outputs:
        outputs[0] = constrain(outputs[0], axes)
      stack = outputs + stack[layer.n_in :]
    return tuple(stack)

  def forward(self, *items):
    if self.remat_policy is None:
      return self._run(*items)
    run = nn.checkpoint(type(self)._run, policy=remat_policy_fn(self.remat_policy),
                        prevent_cse=self.prevent_cse)
    return run(self, *items)


class ScanLayers(Layer):
  """`n_layers` copies of `layer` applied one after another, compiled as one `jax.lax.scan`.

  Same function as `Serial(layer_1, ..., layer_n)` with independent parameters, but the layer
  is traced once, so compile time stays flat in `n_layers`. Every variable of `layer` gets a
  leading axis of size `n_layers` (logical name `'layers'`): parameters, and in `'predict'`
  mode the decoding caches. `layer` must keep the stack's size (`n_in == n_out`); all its
  inputs are carried from one layer to the next. Dropout keys differ per layer.

  ```python
  blocks = ScanLayers(DecoderBlock(...), n_layers=6)   # prints as ScanLayers_6[ DecoderBlock[..] ]
  ```
  """

  layer: Layer
  n_layers: int = 1

  def __post_init__(self):
    if self.layer.n_in != self.layer.n_out:
      raise ValueError(f"ScanLayers: {self.layer.header} must have n_in == n_out to be "
                       f"repeated, has {self.layer.n_in} -> {self.layer.n_out}")
    if self.n_layers < 1:
      raise ValueError(f"ScanLayers: n_layers must be >= 1, got {self.n_layers}")
    super().__post_init__()

  @property
  def n_in(self) -> int:
    return self.layer.n_in

  @property
  def n_out(self) -> int:
    return self.layer.n_out

  @property
  def default_label(self) -> str:
    return f"ScanLayers_{self.n_layers}"

  def forward(self, *items):
    def body(mdl: ScanLayers, carry: tuple):
      return tuple(mdl.call_child(mdl.layer, carry)), None

    scan = nn.scan(
        body,
        variable_axes={"params": 0, "cache": 0, "batch_stats": 0, "intermediates": 0},
        split_rngs={"params": True, "dropout": True},
        length=self.n_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    carry, _ = scan(self, tuple(items))
    return carry


def compute_dtype(dtype: Any) -> Any:
  """A model's `dtype` argument as a jnp dtype: None (float32 compute) or e.g. `'bfloat16'`.

  Parameters stay in `param_dtype` (float32); only the computation runs in `dtype`.
  """
  return None if dtype is None else jnp.dtype(dtype)
