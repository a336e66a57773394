"""Trax's decoding memory for efficient attention: the last `predict_mem_len` inputs.

In `'predict'` mode `SelfAttention` and the LSH layers keep their inputs (not keys and values)
in the `'cache'` collection: `mem` `(batch, predict_mem_len, d_model)` (plus `mem_mask` for
masked layers) and `mem_end`, the number of positions written. A call with few positions
(one, when decoding) writes them at `mem_end`; when they do not fit, the oldest
`predict_drop_len` positions are dropped first (Trax's sliding memory). A longer call is a
prefix: it must come first (on an empty memory), is computed in full, and the memory keeps its
tail, cut at a multiple of `predict_drop_len` so that later drops stay on the same grid (for
chunked attention with the default sizes the memory then always holds exactly the chunks the
next query attends to, so decoding equals the full pass however long it runs).

`predict_drop_len=None` means never drop: writing past `predict_mem_len` is then a
`PredictMemoryError` — raised directly outside `jit`; under `jit` the outputs of that call are
NaN and a host callback raises the same message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.errors import DeclaxError

__all__ = ["PredictMemory", "PredictMemoryError"]


class PredictMemoryError(DeclaxError, ValueError):
  """Decoding ran past the layer's `predict_mem_len` (or a prefix came after the start)."""


def _concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


class PredictMemory:
  """The memory of one layer for one call: `update` it, attend, then `poison` the output.

  ```python
  memory = PredictMemory('SelfAttention', mem_len=8, drop_len=4, max_small_call=4)
  kind, items, q_start = memory.update(module, (x,))     # inside an nn.compact method
  ```
  """

  def __init__(self, layer: str, mem_len: int | None, drop_len: int | None,
               max_small_call: int | None = None):
    if mem_len is None or mem_len < 1:
      raise ValueError(f"{layer}: mode='predict' needs predict_mem_len >= 1 (the number of "
                       f"positions to remember), got {mem_len}; set predict_mem_len "
                       "(or chunk_len, which gives a default)")
    if drop_len is not None and not 0 < drop_len <= mem_len:
      raise ValueError(f"{layer}: predict_drop_len must be in [1, predict_mem_len={mem_len}] "
                       f"(or None: never drop), got {drop_len}")
    self.layer, self.mem_len, self.drop_len = layer, mem_len, drop_len
    self.max_small_call = 1 if max_small_call is None else max_small_call
    self.rolled = jnp.zeros((), bool)   # whether this call dropped the oldest positions
    self.bad = jnp.zeros((), bool)      # an overflow found under jit (outputs become NaN)

  # -- errors ---------------------------------------------------------------------------------

  def _fail_if(self, condition, message: str) -> None:
    if _concrete(condition):
      if bool(condition):
        raise PredictMemoryError(message)
      return
    self.bad = self.bad | condition

    def raise_error():
      raise PredictMemoryError(message)

    jax.lax.cond(condition, lambda: jax.debug.callback(raise_error), lambda: None)

  def poison(self, out: jax.Array) -> jax.Array:
    """NaN outputs for a call that overflowed under `jit` (Trax signals errors the same way)."""
    if _concrete(self.bad) and not bool(self.bad):
      return out
    return jnp.where(self.bad, jnp.nan, out)

  # -- the memory ------------------------------------------------------------------------------

  def pad_to(self, items: Sequence[jax.Array], chunk_len: int | None) -> tuple:
    """Items `(batch, T, ...)` padded with zeros along axis 1 to a multiple of `chunk_len`."""
    length = items[0].shape[1]
    if chunk_len is None or length % chunk_len == 0:
      return tuple(items)
    extra = chunk_len - length % chunk_len
    return tuple(jnp.pad(x, [(0, 0), (0, extra)] + [(0, 0)] * (x.ndim - 2)) for x in items)

  def roll(self, buffer: jax.Array, axis: int = 1) -> jax.Array:
    """`buffer` with its oldest `drop_len` positions dropped when this call rolled the memory."""
    if self.drop_len is None:
      return buffer
    rolled = jnp.roll(buffer, -self.drop_len, axis=axis)
    axis = axis % buffer.ndim
    index = jnp.arange(buffer.shape[axis]).reshape(
        [1] * axis + [-1] + [1] * (buffer.ndim - axis - 1))
    dropped = index >= buffer.shape[axis] - self.drop_len
    rolled = jnp.where(dropped, jnp.zeros((), buffer.dtype), rolled)
    return jnp.where(self.rolled, rolled, buffer)

  def tail_start(self, length: int) -> int:
    """Where a prefix of `length` positions starts being kept (a multiple of `drop_len`)."""
    if length <= self.mem_len:
      return 0
    if self.drop_len is None:
      raise PredictMemoryError(
          f"{self.layer}: a prefix of {length} positions does not fit in predict_mem_len="
          f"{self.mem_len}, and predict_drop_len=None forbids forgetting; raise "
          "predict_mem_len or set predict_drop_len")
    return math.ceil((length - self.mem_len) / self.drop_len) * self.drop_len

  def update(self, module: nn.Module, items: Sequence[jax.Array],
             names: Sequence[str] = ("mem", "mem_mask")) -> tuple[str, tuple, jax.Array]:
    """Writes this call's `items` (each `(batch, T, ...)`) into `module`'s cache under `names`.

    Returns `(kind, sequence, q_start)`: `kind == 'step'` — `sequence` is the memory after the
    write and the new queries are at `[q_start, q_start + T)`; `kind == 'prefix'` — `sequence`
    is `items` itself (a whole prefix, computed in full) and `q_start == 0`.
    """
    batch, length = items[0].shape[:2]
    mems = [module.variable("cache", name, jnp.zeros, (batch, self.mem_len) + x.shape[2:],
                            x.dtype) for name, x in zip(names[:len(items)], items, strict=True)]
    end_var = module.variable("cache", "mem_end", lambda: jnp.zeros((), jnp.int32))
    initializing = module.is_initializing()
    chex.assert_axis_dimension(mems[0].value, 0, batch, exception_type=PredictMemoryError,
                               custom_message=(
        f"{self.layer}: the memory holds {mems[0].value.shape[0]} rows but this call has {batch}; "
        "initialize the predict-mode model with the decoding batch size"))
    end = end_var.value
    if length <= self.max_small_call and length < self.mem_len:
      if self.drop_len is not None:
        self.rolled = end + length > self.mem_len
        end = jnp.where(self.rolled, end - self.drop_len, end)
      else:
        self._fail_if(end + length > self.mem_len,
                      f"{self.layer}: decoding past predict_mem_len={self.mem_len} positions "
                      "(predict_drop_len=None forbids forgetting); raise predict_mem_len or set "
                      "predict_drop_len for Trax's sliding memory")
      new = [jax.lax.dynamic_update_slice_in_dim(self.roll(v.value), x.astype(v.value.dtype),
                                                 end, axis=1)
             for v, x in zip(mems, items, strict=True)]
      kind, sequence, q_start = "step", tuple(new), end
      new_end = end + length
    else:
      self._fail_if(end != 0, f"{self.layer}: a call with {length} positions (a prefix) must "
                    "come first, on an empty memory; feed later positions one call at a time "
                    f"(at most {self.max_small_call} per call)")
      start = self.tail_start(length)
      new = []
      for v, x in zip(mems, items, strict=True):
        tail = x[:, start:].astype(v.value.dtype)
        pad = [(0, 0), (0, self.mem_len - tail.shape[1])] + [(0, 0)] * (x.ndim - 2)
        new.append(jnp.pad(tail, pad))
      kind, sequence, q_start = "prefix", tuple(items), jnp.zeros((), jnp.int32)
      new_end = jnp.asarray(length - start, jnp.int32)
      self.prefix_start = start
    if not initializing:  # init leaves the memory empty, as CausalAttention's cache
      for v, value in zip(mems, new, strict=True):
        v.value = value
      end_var.value = jnp.asarray(new_end, jnp.int32)
    self.initializing = initializing
    return kind, sequence, q_start
