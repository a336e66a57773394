"""The plumbing of `declax.decoding`: running a model in `'predict'` mode one call at a time.

In `'predict'` mode a sequence model keeps what it has seen in the `'cache'` collection (KV
caches and positions in Transformers, states in RNNs, the encoder's output in the
encoder-decoder `Transformer`). This module makes the empty cache, feeds tokens through the
model, checks that a decode fits the model's context, resolves Trax's `inputs` / `batch_size`
arguments, and moves cache rows between beams. It never looks at what a cache leaf means: the
batch axis of every leaf is found from its shapes.

```python
cache = init_cache(with_mode(model, 'predict'), batch_size=2)
logits, cache = step(predict_model, {'params': params}, cache, tokens, None)  # (2, vocab)
```
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from declax.errors import DeclaxError
from declax.layers.base import with_mode

__all__ = ["ContextLengthError", "init_cache"]


class ContextLengthError(DeclaxError, ValueError):
  """A decode needs more positions (start token + prompt + `max_length`) than the model has."""


def model_inputs(model: nn.Module, tokens: jax.Array, inputs: jax.Array | None) -> Any:
  """What `model` takes: the tokens, or `(inputs, tokens)` for an encoder-decoder."""
  if model.n_in == 1:
    if inputs is not None:
      raise ValueError(f"{model.header} takes only tokens (n_in == 1), but encoder inputs were "
                       "given")
    return tokens
  if model.n_in == 2:
    if inputs is None:
      raise ValueError(f"{model.header} is an encoder-decoder (n_in == 2): pass inputs=...")
    return (inputs, tokens)
  raise ValueError(f"decoding needs a model with n_in 1 (tokens) or 2 (inputs, tokens), "
                   f"{model.header} has n_in {model.n_in}")


def init_cache(model: nn.Module, batch_size: int, inputs: jax.Array | None = None) -> Any:
  """The empty `'cache'` collection of `model` in `'predict'` mode for `batch_size` rows.

  Compiled: only the cache is computed (the parameter initializers are dead code).

  ```python
  cache = init_cache(TransformerLM(vocab_size=256, max_len=64), batch_size=2)
  ```
  """
  return _init_cache(with_mode(model, "predict"), batch_size, inputs)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_cache(model: nn.Module, batch_size: int, inputs: jax.Array | None) -> Any:
  tokens = jnp.zeros((batch_size, 1), jnp.int32)
  variables = model.init(jax.random.PRNGKey(0), model_inputs(model, tokens, inputs))
  if "cache" not in variables:
    raise ValueError(f"{model.header} keeps no 'cache' in 'predict' mode, so it cannot decode "
                     "token by token")
  return variables["cache"]


def step(model: nn.Module, variables: Mapping, cache: Any, tokens: jax.Array,
         inputs: jax.Array | None) -> tuple[jax.Array, Any]:
  """Feeds `tokens (batch, T)`; returns the logits of the last position and the new cache."""
  outputs, updates = model.apply({**variables, "cache": cache},
                                 model_inputs(model, tokens, inputs), mutable=["cache"])
  logits = outputs[0] if model.n_out > 1 else outputs
  return logits[:, -1].astype(jnp.float32), updates["cache"]


def strip_cache(variables: Mapping) -> dict:
  """The variables without an old `'cache'` (decoding starts from an empty one), unboxed."""
  return {k: v for k, v in nn.unbox(dict(variables)).items() if k != "cache"}


# ------------------------------------------------------------------------------------------------
# Context length
# ------------------------------------------------------------------------------------------------


def cache_lengths(cache: Any) -> list[int]:
  """The lengths of the KV caches (`cached_key` leaves: `(..., batch, length, heads, d)`)."""
  lengths = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(cache)[0]:
    if str(getattr(path[-1], "key", "")) == "cached_key":
      lengths.append(int(np.shape(leaf)[-3]))
  return lengths


def check_fits(model: nn.Module, lengths: list[int], prompt_length: int,
               max_length: int) -> None:
  """`ContextLengthError` unless start + prompt + `max_length - 1` positions fit every cache."""
  n_positions = 1 + prompt_length + max_length - 1
  for length in lengths:
    if n_positions > length:
      raise ContextLengthError(
          f"decoding needs {n_positions} positions (start token + prompt of {prompt_length} + "
          f"max_length {max_length} - 1), but the model's context (max_len, the length of "
          f"{model.header}'s cache) is {length}: shorten the prompt or lower max_length to "
          f"{length - prompt_length}, or train a model with a larger max_len")


def context_limit(model: nn.Module, batch: int, inputs: jax.Array | None) -> int | None:
  """The shortest KV cache of the predict-mode model (None: no length limit, e.g. an RNN)."""
  cache = jax.eval_shape(lambda: init_cache(model, batch, inputs))
  lengths = cache_lengths(cache)
  return min(lengths) if lengths else None


# ------------------------------------------------------------------------------------------------
# Arguments
# ------------------------------------------------------------------------------------------------


def _as_batch(prefix: Any, inputs: Any) -> jax.Array:
  """`prefix` as int32 `(batch, length)`; None gives an empty prefix."""
  if prefix is None:
    batch = 1 if inputs is None else np.shape(inputs)[0]
    return jnp.zeros((batch, 0), jnp.int32)
  prefix = jnp.asarray(prefix)
  if not jnp.issubdtype(prefix.dtype, jnp.integer):
    raise TypeError(f"prefix must hold integer token ids, got {prefix.dtype}")
  if prefix.ndim == 1:
    prefix = prefix[None]
  if prefix.ndim != 2:
    raise ValueError(f"prefix must be (batch, length) or (length,), got shape {prefix.shape}")
  return prefix.astype(jnp.int32)


def resolve_inputs(model: nn.Module, inputs: Any, prefix: Any,
                   batch_size: int | None) -> tuple[jax.Array, jax.Array | None]:
  """Trax's `inputs` / `batch_size` and declax's `prefix` -> `(prefix, encoder inputs)`.

  As in Trax, a language model's (`n_in == 1`) `inputs` are its prompt; an encoder-decoder's
  are the encoder's input tokens.
  """
  if model.n_in == 1 and inputs is not None:
    if prefix is not None:
      raise ValueError(f"{model.header} is a language model: give its prompt as prefix= or as "
                       "inputs= (Trax's name), not both")
    prefix, inputs = inputs, None
  if inputs is not None:
    inputs = jnp.asarray(inputs)
    if not jnp.issubdtype(inputs.dtype, jnp.integer) or inputs.ndim != 2:
      raise ValueError(f"inputs must be integer tokens (batch, length), got {inputs.dtype} "
                       f"{inputs.shape}")
  given = prefix is not None or inputs is not None
  prefix = _as_batch(prefix, inputs)
  if inputs is not None and inputs.shape[0] != prefix.shape[0]:
    raise ValueError(f"inputs have {inputs.shape[0]} rows but the prefix has {prefix.shape[0]}")
  if batch_size is not None:
    if given and prefix.shape[0] != batch_size:
      raise ValueError(f"Inputs batch size ({prefix.shape[0]}) does not match batch_size arg "
                       f"({batch_size})")
    if not given:
      prefix = jnp.zeros((batch_size, 0), jnp.int32)
  return prefix, inputs


# ------------------------------------------------------------------------------------------------
# Rows of the cache (beam search)
# ------------------------------------------------------------------------------------------------


def batch_axes(model: nn.Module, inputs: jax.Array | None) -> Any:
  """For every cache leaf, the axis that grows with the batch (None for scalars like indices).

  Found by comparing the cache's shapes for two batch sizes (`jax.eval_shape`, nothing runs).
  """
  def shapes(batch: int):
    tiled = None if inputs is None else jnp.zeros((batch,) + inputs.shape[1:], inputs.dtype)
    return jax.eval_shape(lambda: init_cache(model, batch, tiled))

  one, two = shapes(1), shapes(2)

  def axis(a, b):
    diff = [i for i, (x, y) in enumerate(zip(a.shape, b.shape, strict=True)) if x != y]
    return diff[0] if diff else None

  return jax.tree.map(axis, one, two)


def repeat_rows(tree: Any, k: int, axes: Any) -> Any:
  """Every cache leaf `k` times along its batch axis: row `b` becomes rows `b*k` to `b*k+k-1`."""
  return jax.tree.map(lambda x, ax: x if ax is None else jnp.repeat(x, k, axis=ax), tree, axes)


def gather_rows(tree: Any, indices: jax.Array, axes: Any) -> Any:
  """Row `i` of every cache leaf (along its batch axis; `axes` None: kept) becomes `indices[i]`."""
  return jax.tree.map(lambda x, ax: x if ax is None else jnp.take(x, indices, axis=ax), tree, axes)
