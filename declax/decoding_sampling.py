"""Autoregressive sampling with the models' `'predict'` mode: greedy, temperature and top-k.

`autoregressive_sample` feeds the start token and the prefix in one call, then generates one
token per step, the whole loop one jitted `jax.lax.while_loop`; `autoregressive_sample_stream`
is Trax's generator, one model call per token. Both are re-exported by `declax.decoding`.

```python
tokens = autoregressive_sample(model, {'params': params}, prefix=jnp.array([[100, 101]]),
                               max_length=64, temperature=0.8, top_k=40,
                               rng=jax.random.key(0))           # (1, 64) int32
```
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from declax.decoding_cache import (
    ContextLengthError,
    cache_lengths,
    check_fits,
    context_limit,
    init_cache,
    model_inputs,
    resolve_inputs,
    step,
    strip_cache,
)
from declax.layers.base import with_mode

__all__ = ["autoregressive_sample", "autoregressive_sample_stream", "sample_logits"]


def sample_logits(logits: jax.Array, rng: jax.Array | None, temperature: float = 1.0,
                  top_k: int | None = None) -> jax.Array:
  """Token ids `(...)` drawn from `logits (..., vocab)`.

  `temperature == 0` is greedy (argmax; `rng` unused). Otherwise tokens are drawn from
  `softmax(logits / temperature)`, restricted to the `top_k` largest logits when given.
  """
  logits = logits.astype(jnp.float32)
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  if temperature < 0.0:
    raise ValueError(f"temperature must be >= 0, got {temperature}")
  if top_k is not None:
    if not 1 <= top_k <= logits.shape[-1]:
      raise ValueError(f"top_k must be in [1, {logits.shape[-1]}], got {top_k}")
    kth_largest = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth_largest, -jnp.inf, logits)
  return jax.random.categorical(rng, logits / temperature).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("model", "max_length", "temperature", "top_k",
                                             "eos_id", "start_id"))
def _sample(model: nn.Module, variables: dict, prefix: jax.Array, inputs: jax.Array | None,
            rng: jax.Array, *, max_length: int, temperature: float, top_k: int | None,
            eos_id: int | None, start_id: int) -> jax.Array:
  batch = prefix.shape[0]
  cache = init_cache(model, batch, inputs)
  check_fits(model, cache_lengths(cache), prefix.shape[1], max_length)
  first = jnp.concatenate([jnp.full((batch, 1), start_id, jnp.int32), prefix], axis=1)
  logits, cache = step(model, variables, cache, first, inputs)
  rng, key = jax.random.split(rng)
  token = sample_logits(logits, key, temperature, top_k)
  out = jnp.zeros((batch, max_length), jnp.int32).at[:, 0].set(token)
  done = (token == eos_id) if eos_id is not None else jnp.zeros((batch,), bool)

  def cond(state):
    i, _, _, _, done, _ = state
    return (i < max_length) & ~jnp.all(done)

  def body(state):
    i, cache, token, out, done, rng = state
    logits, cache = step(model, variables, cache, token[:, None], inputs)
    rng, key = jax.random.split(rng)
    token = jnp.where(done, 0, sample_logits(logits, key, temperature, top_k))
    out = jax.lax.dynamic_update_slice(out, token[:, None], (0, i))
    if eos_id is not None:
      done = done | (token == eos_id)
    return i + 1, cache, token, out, done, rng

  state = (jnp.ones((), jnp.int32), cache, token, out, done, rng)
  return jax.lax.while_loop(cond, body, state)[3]


def autoregressive_sample_stream(model: nn.Module, variables: Mapping, inputs: Any = None,
                                 batch_size: int | None = None, temperature: float = 1.0,
                                 start_id: int = 0, accelerate: bool = True,
                                 eval_mode: bool = False, eval_min_length: int = 1, *,
                                 prefix: Any = None, top_k: int | None = None,
                                 rng: jax.Array | None = None) -> Iterator[np.ndarray]:
  """Yields the next token of every row, int32 `(batch,)`, forever (Trax's generator).

  Each step feeds the previous token to the predict-mode model (its caches hold the rest);
  `accelerate=False` runs the steps without `jax.jit`. `eval_mode=True` runs the model in
  `'eval'` mode on the whole sequence so far instead (no cache; the sequence is padded to a
  power of two, at least `eval_min_length`), as Trax does, e.g. for models without a
  predict mode. Past the model's context the generator raises `ContextLengthError`.

  ```python
  stream = autoregressive_sample_stream(model, {'params': p}, inputs=source, temperature=0.0)
  first_five = [next(stream) for _ in range(5)]         # five (batch,) arrays
  ```
  """
  prefix, inputs = resolve_inputs(model, inputs, prefix, batch_size)
  variables = strip_cache(variables)
  rng = jax.random.PRNGKey(0) if rng is None else rng
  sample = functools.partial(sample_logits, temperature=float(temperature), top_k=top_k)
  if eval_mode:
    yield from _eval_mode_stream(model, variables, prefix, inputs, rng, sample, accelerate,
                                 eval_min_length)
    return
  predict = with_mode(model, "predict")
  batch = prefix.shape[0]
  limit = context_limit(model, batch, inputs)
  cache = init_cache(model, batch, inputs)
  run = functools.partial(_jit_step if accelerate else step, predict)
  if accelerate:
    sample = functools.partial(_jit_sample, temperature=float(temperature), top_k=top_k)
  tokens = jnp.concatenate([jnp.full((batch, 1), start_id, jnp.int32), prefix], axis=1)
  position = tokens.shape[1]
  while True:
    if limit is not None and position > limit:
      raise ContextLengthError(
          f"the next token needs position {position}, but the model's context (max_len, its "
          f"cache length) is {limit}; stop the stream earlier or use a larger max_len")
    logits, cache = run(variables, cache, tokens, inputs)
    rng, key = jax.random.split(rng)
    token = sample(logits, key)
    yield np.asarray(token)
    tokens, position = token[:, None], position + 1


def _last_logits(evaluator, variables, tokens, inputs, index):
  outputs = evaluator.apply(variables, model_inputs(evaluator, tokens, inputs))
  logits = outputs[0] if evaluator.n_out > 1 else outputs
  return jax.lax.dynamic_index_in_dim(logits, index, axis=1, keepdims=False).astype(jnp.float32)


# Module-level jitted steps: every stream of the same model reuses their compilations.
_jit_step = jax.jit(step, static_argnums=0)
_jit_sample = jax.jit(sample_logits, static_argnames=("temperature", "top_k"))
_jit_last_logits = jax.jit(_last_logits, static_argnums=0)


def _eval_mode_stream(model, variables, prefix, inputs, rng, sample, accelerate, min_length):
  evaluator = with_mode(model, "eval")
  last_logits = functools.partial(_jit_last_logits if accelerate else _last_logits, evaluator)
  if accelerate:
    sample = functools.partial(_jit_sample, temperature=sample.keywords["temperature"],
                               top_k=sample.keywords["top_k"])
  tokens = np.asarray(prefix)
  while True:
    length = tokens.shape[1]
    padded = int(2 ** np.ceil(np.log2(max(min_length, length + 1))))
    logits = last_logits(variables, jnp.asarray(np.pad(tokens, [(0, 0), (0, padded - length)])),
                         inputs, length)
    rng, key = jax.random.split(rng)
    token = np.asarray(sample(logits, key))
    yield token
    tokens = np.concatenate([tokens, token[:, None]], axis=1)


def autoregressive_sample(model: nn.Module, variables: Mapping, prefix: Any = None,
                          max_length: int = 100, temperature: float = 1.0,
                          top_k: int | None = None, rng: jax.Array | None = None,
                          eos_id: int | None = None, *, inputs: Any = None,
                          start_id: int = 0, batch_size: int | None = None,
                          accelerate: bool = True, eval_mode: bool = False,
                          eval_min_length: int = 1) -> jax.Array:
  """Samples `max_length` tokens after `prefix`, one at a time with the model's caches.

  **Arguments**
  - `model`: a sequence model in any mode (it is switched to `'predict'` with `tl.with_mode`):
    `TransformerLM`, `RNNLM`, or an encoder-decoder `Transformer` with `inputs`.
  - `variables`: `{'params': ...}` (other collections such as `batch_stats` are used too; an old
    `'cache'` is ignored: decoding starts from an empty one).
  - `prefix`: int tokens `(batch, length)` or `(length,)` to continue (None: nothing); fed
    after `start_id`.
  - `max_length`: number of tokens to generate; `start + prefix + max_length - 1` positions must
    fit the model's `max_len`, else `ContextLengthError` (nothing is cut silently).
  - `temperature`: 0 for greedy decoding, else sampling from `softmax(logits / temperature)`;
    `top_k`: sample only among the `top_k` most likely tokens.
  - `rng`: PRNG key for sampling (default `PRNGKey(0)`); `eos_id`: a row stops at this token
    (it is kept; later positions are 0), and the loop ends when every row has stopped.
  - `inputs`: the encoder's input tokens `(batch, input_length)` for an encoder-decoder model;
    for a language model, Trax's name for the prompt (same as `prefix`).
  - Trax's `batch_size` (rows to sample when there is no prompt; else checked against it),
    `accelerate` (False: the steps run without `jax.jit`), `eval_mode` / `eval_min_length`
    (rerun the `'eval'`-mode model on the whole sequence at each step; see
    `autoregressive_sample_stream`).

  **Returns** int32 `(batch, max_length)`: the generated tokens (not the prefix).

  ```python
  tokens = autoregressive_sample(model, {'params': params}, prefix=[[35, 36]], max_length=20,
                                 temperature=0.0)   # greedy
  ```
  """
  if max_length < 1:
    raise ValueError(f"max_length must be >= 1, got {max_length}")
  prefix, inputs = resolve_inputs(model, inputs, prefix, batch_size)
  rng = jax.random.PRNGKey(0) if rng is None else rng
  if accelerate and not eval_mode:
    return _sample(with_mode(model, "predict"), strip_cache(variables), prefix, inputs, rng,
                   max_length=int(max_length), temperature=float(temperature),
                   top_k=None if top_k is None else int(top_k), eos_id=eos_id,
                   start_id=int(start_id))
  if not eval_mode:
    limit = context_limit(model, prefix.shape[0], inputs)
    check_fits(model, [] if limit is None else [limit], prefix.shape[1], max_length)
  stream = autoregressive_sample_stream(
      model, variables, prefix=prefix, inputs=inputs, temperature=temperature,
      start_id=start_id, accelerate=accelerate, eval_mode=eval_mode,
      eval_min_length=eval_min_length, top_k=top_k, rng=rng)
  out = np.zeros((prefix.shape[0], max_length), np.int32)
  done = np.zeros(prefix.shape[0], bool)
  for i, token in zip(range(max_length), stream, strict=False):
    out[:, i] = np.where(done, 0, token)
    if eos_id is not None:
      done |= token == eos_id
      if done.all():
        break
  return jnp.asarray(out)

