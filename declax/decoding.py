"""Autoregressive decoding with the models' `'predict'` mode: sampling and beam search.

In `'predict'` mode a sequence model keeps what it has seen in the `'cache'` collection (KV caches
and positions in Transformers, states in RNNs, the encoder's output in the encoder-decoder
`Transformer`) and takes one new token per call. These functions start from an empty cache (a
fresh `'predict'`-mode init), feed the start token and the prefix in one call, then generate one
token per step; the whole loop is one jitted `jax.lax.while_loop`. Nothing here depends on what
the cache holds: beam search reorders every cache leaf along its batch axis.

Trax's arguments are accepted under Trax's names (`inputs`, `batch_size`, `temperature`,
`start_id`, `eos_id`, `max_length`, `accelerate`, `eval_mode`, `eval_min_length`, `n_beams`,
`length_penalty`); `autoregressive_sample_stream` is Trax's generator. Unlike Trax, the weights
are passed as `variables` (Linen), and a decode that would run past the model's context raises
`ContextLengthError` instead of being cut.

```python
model = TransformerLM(vocab_size=256, ...)                  # any mode: the train model is fine
tokens = autoregressive_sample(model, {'params': params}, prefix=jnp.array([[100, 101]]),
                               max_length=64, temperature=0.8, top_k=40,
                               rng=jax.random.key(0), eos_id=None)     # (1, 64) int32
best, scores = beam_search(transformer, {'params': p}, inputs=source, max_length=32, beam_size=4,
                           eos_id=1)                         # (batch, 4, 32), (batch, 4)
```

Token conventions follow Trax: decoding starts from `start_id` (0, the id `ShiftRight` pads
with), the returned tokens exclude the start token and the prefix, and after a row emits `eos_id`
the rest of it is filled with 0.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from declax.errors import DeclaxError
from declax.layers.base import with_mode

__all__ = ["ContextLengthError", "autoregressive_sample", "autoregressive_sample_stream",
           "beam_search", "init_cache", "sample_logits"]


class ContextLengthError(DeclaxError, ValueError):
  """A decode needs more positions (start token + prompt + `max_length`) than the model has."""

NEG_INF = -1.0e7  # a finite "minus infinity" for log-probabilities (no inf - inf NaNs)


# ------------------------------------------------------------------------------------------------
# Running the predict-mode model
# ------------------------------------------------------------------------------------------------


def _model_inputs(model: nn.Module, tokens: jax.Array, inputs: jax.Array | None) -> Any:
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
  """
  return _init_cache(with_mode(model, "predict"), batch_size, inputs)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_cache(model: nn.Module, batch_size: int, inputs: jax.Array | None) -> Any:
  tokens = jnp.zeros((batch_size, 1), jnp.int32)
  variables = model.init(jax.random.PRNGKey(0), _model_inputs(model, tokens, inputs))
  if "cache" not in variables:
    raise ValueError(f"{model.header} keeps no 'cache' in 'predict' mode, so it cannot decode "
                     "token by token")
  return variables["cache"]


def _step(model: nn.Module, variables: Mapping, cache: Any, tokens: jax.Array,
          inputs: jax.Array | None) -> tuple[jax.Array, Any]:
  """Feeds `tokens (batch, T)`; returns the logits of the last position and the new cache."""
  outputs, updates = model.apply({**variables, "cache": cache},
                                 _model_inputs(model, tokens, inputs), mutable=["cache"])
  logits = outputs[0] if model.n_out > 1 else outputs
  return logits[:, -1].astype(jnp.float32), updates["cache"]


def _cache_lengths(cache: Any) -> list[int]:
  """The lengths of the KV caches (`cached_key` leaves: `(..., batch, length, heads, d)`)."""
  lengths = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(cache)[0]:
    if str(getattr(path[-1], "key", "")) == "cached_key":
      lengths.append(int(np.shape(leaf)[-3]))
  return lengths


def _check_fits(model: nn.Module, lengths: list[int], prompt_length: int,
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


def _variables(variables: Mapping) -> dict:
  return {k: v for k, v in nn.unbox(dict(variables)).items() if k != "cache"}


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


# ------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------


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
  _check_fits(model, _cache_lengths(cache), prefix.shape[1], max_length)
  first = jnp.concatenate([jnp.full((batch, 1), start_id, jnp.int32), prefix], axis=1)
  logits, cache = _step(model, variables, cache, first, inputs)
  rng, key = jax.random.split(rng)
  token = sample_logits(logits, key, temperature, top_k)
  out = jnp.zeros((batch, max_length), jnp.int32).at[:, 0].set(token)
  done = (token == eos_id) if eos_id is not None else jnp.zeros((batch,), bool)

  def cond(state):
    i, _, _, _, done, _ = state
    return (i < max_length) & ~jnp.all(done)

  def body(state):
    i, cache, token, out, done, rng = state
    logits, cache = _step(model, variables, cache, token[:, None], inputs)
    rng, key = jax.random.split(rng)
    token = jnp.where(done, 0, sample_logits(logits, key, temperature, top_k))
    out = jax.lax.dynamic_update_slice(out, token[:, None], (0, i))
    if eos_id is not None:
      done = done | (token == eos_id)
    return i + 1, cache, token, out, done, rng

  state = (jnp.ones((), jnp.int32), cache, token, out, done, rng)
  return jax.lax.while_loop(cond, body, state)[3]


def _resolve_inputs(model: nn.Module, inputs: Any, prefix: Any,
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


def _context_limit(model: nn.Module, batch: int, inputs: jax.Array | None) -> int | None:
  """The shortest KV cache of the predict-mode model (None: no length limit, e.g. an RNN)."""
  cache = jax.eval_shape(lambda: init_cache(model, batch, inputs))
  lengths = _cache_lengths(cache)
  return min(lengths) if lengths else None


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
  prefix, inputs = _resolve_inputs(model, inputs, prefix, batch_size)
  variables = _variables(variables)
  rng = jax.random.PRNGKey(0) if rng is None else rng
  sample = functools.partial(sample_logits, temperature=float(temperature), top_k=top_k)
  if eval_mode:
    yield from _eval_mode_stream(model, variables, prefix, inputs, rng, sample, accelerate,
                                 eval_min_length)
    return
  predict = with_mode(model, "predict")
  batch = prefix.shape[0]
  limit = _context_limit(model, batch, inputs)
  cache = init_cache(model, batch, inputs)
  step = functools.partial(_jit_step if accelerate else _step, predict)
  if accelerate:
    sample = functools.partial(_jit_sample, temperature=float(temperature), top_k=top_k)
  tokens = jnp.concatenate([jnp.full((batch, 1), start_id, jnp.int32), prefix], axis=1)
  position = tokens.shape[1]
  while True:
    if limit is not None and position > limit:
      raise ContextLengthError(
          f"the next token needs position {position}, but the model's context (max_len, its "
          f"cache length) is {limit}; stop the stream earlier or use a larger max_len")
    logits, cache = step(variables, cache, tokens, inputs)
    rng, key = jax.random.split(rng)
    token = sample(logits, key)
    yield np.asarray(token)
    tokens, position = token[:, None], position + 1


def _last_logits(evaluator, variables, tokens, inputs, index):
  outputs = evaluator.apply(variables, _model_inputs(evaluator, tokens, inputs))
  logits = outputs[0] if evaluator.n_out > 1 else outputs
  return jax.lax.dynamic_index_in_dim(logits, index, axis=1, keepdims=False).astype(jnp.float32)


# Module-level jitted steps: every stream of the same model reuses their compilations.
_jit_step = jax.jit(_step, static_argnums=0)
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
  prefix, inputs = _resolve_inputs(model, inputs, prefix, batch_size)
  rng = jax.random.PRNGKey(0) if rng is None else rng
  if accelerate and not eval_mode:
    return _sample(with_mode(model, "predict"), _variables(variables), prefix, inputs, rng,
                   max_length=int(max_length), temperature=float(temperature),
                   top_k=None if top_k is None else int(top_k), eos_id=eos_id,
                   start_id=int(start_id))
  if not eval_mode:
    limit = _context_limit(model, prefix.shape[0], inputs)
    _check_fits(model, [] if limit is None else [limit], prefix.shape[1], max_length)
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


# ------------------------------------------------------------------------------------------------
# Beam search
# ------------------------------------------------------------------------------------------------


def _batch_axes(model: nn.Module, inputs: jax.Array | None) -> Any:
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


def _gather_beams(tree: Any, indices: jax.Array, axes: Any) -> Any:
  """Reorders the flattened `batch * beam` axis of every cache leaf by `indices`."""
  return jax.tree.map(lambda x, ax: x if ax is None else jnp.take(x, indices, axis=ax), tree, axes)


def _length_penalty(length: jax.Array | int, alpha: float) -> jax.Array:
  """GNMT's `((5 + length) / 6) ** alpha`."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


@functools.partial(jax.jit, static_argnames=("model", "max_length", "beam_size", "alpha",
                                             "eos_id", "start_id"))
def _beam_search(model: nn.Module, variables: dict, prefix: jax.Array, inputs: jax.Array | None,
                 *, max_length: int, beam_size: int, alpha: float, eos_id: int | None,
                 start_id: int) -> tuple[jax.Array, jax.Array]:
  batch, k = prefix.shape[0], beam_size
  tile = lambda x: None if x is None else jnp.repeat(x, k, axis=0)  # row b*k + j
  inputs, prefix = tile(inputs), tile(prefix)
  axes = _batch_axes(model, inputs)
  cache = init_cache(model, batch * k, inputs)
  _check_fits(model, _cache_lengths(cache), prefix.shape[1], max_length)
  first = jnp.concatenate([jnp.full((batch * k, 1), start_id, jnp.int32), prefix], axis=1)
  logits, cache = _step(model, variables, cache, first, inputs)
  vocab = logits.shape[-1]
  # All beams start identical: only beam 0 may expand at the first step.
  alive_logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (batch, 1))
  state = dict(
      i=jnp.zeros((), jnp.int32), cache=cache, logits=logits,
      alive_seq=jnp.zeros((batch, k, max_length), jnp.int32), alive_logp=alive_logp,
      done_seq=jnp.zeros((batch, k, max_length), jnp.int32),
      done_score=jnp.full((batch, k), NEG_INF, jnp.float32),
      done_flag=jnp.zeros((batch, k), bool),
  )

  def cond(s):
    best_alive = s["alive_logp"][:, 0] / _length_penalty(max_length, alpha)
    worst_done = jnp.where(s["done_flag"], s["done_score"], NEG_INF).min(axis=1)
    can_improve = ~jnp.all(s["done_flag"], axis=1) | (best_alive > worst_done)
    return (s["i"] < max_length) & jnp.any(can_improve)

  def body(s):
    i = s["i"]
    logp = jax.nn.log_softmax(s["logits"]).reshape(batch, k, vocab)
    candidates = (s["alive_logp"][..., None] + logp).reshape(batch, k * vocab)
    top_logp, top_index = jax.lax.top_k(candidates, 2 * k)     # (batch, 2k)
    top_beam, top_token = top_index // vocab, top_index % vocab
    top_seq = jnp.take_along_axis(s["alive_seq"], top_beam[..., None], axis=1)
    top_seq = jax.lax.dynamic_update_slice(top_seq, top_token[..., None], (0, 0, i))
    is_eos = (top_token == eos_id) if eos_id is not None else jnp.zeros_like(top_token, bool)
    # Alive: the k best candidates that did not end.
    alive_logp, keep = jax.lax.top_k(jnp.where(is_eos, NEG_INF, top_logp), k)
    alive_seq = jnp.take_along_axis(top_seq, keep[..., None], axis=1)
    alive_beam = jnp.take_along_axis(top_beam, keep, axis=1)
    alive_token = jnp.take_along_axis(top_token, keep, axis=1)
    # Finished: merge the candidates that ended with those found before; keep the k best.
    new_score = jnp.where(is_eos, top_logp / _length_penalty(i + 1, alpha), NEG_INF)
    scores = jnp.concatenate([s["done_score"], new_score], axis=1)
    flags = jnp.concatenate([s["done_flag"], is_eos], axis=1)
    seqs = jnp.concatenate([s["done_seq"], top_seq], axis=1)
    done_score, pick = jax.lax.top_k(jnp.where(flags, scores, NEG_INF), k)
    done_flag = jnp.take_along_axis(flags, pick, axis=1)
    done_seq = jnp.take_along_axis(seqs, pick[..., None], axis=1)
    # Advance the alive beams by one token, with their parents' caches.
    parents = (jnp.arange(batch)[:, None] * k + alive_beam).reshape(-1)
    cache = _gather_beams(s["cache"], parents, axes)
    logits, cache = _step(model, variables, cache, alive_token.reshape(-1, 1), inputs)
    return dict(i=i + 1, cache=cache, logits=logits, alive_seq=alive_seq, alive_logp=alive_logp,
                done_seq=done_seq, done_score=done_score, done_flag=done_flag)

  s = jax.lax.while_loop(cond, body, state)
  # Rows without any finished beam return their alive beams, scored like finished ones.
  alive_score = s["alive_logp"] / _length_penalty(s["i"], alpha)
  any_done = jnp.any(s["done_flag"], axis=1)
  seqs = jnp.where(any_done[:, None, None], s["done_seq"], s["alive_seq"])
  scores = jnp.where(any_done[:, None], s["done_score"], alive_score)
  return seqs, scores


def beam_search(model: nn.Module, variables: Mapping, inputs: Any = None, max_length: int = 100,
                beam_size: int = 4, alpha: float = 0.6, eos_id: int | None = 1, *,
                prefix: Any = None, start_id: int = 0, batch_size: int | None = None,
                n_beams: int | None = None, length_penalty: float | None = None,
                accelerate: bool = True) -> tuple[jax.Array, jax.Array]:
  """The `beam_size` most likely continuations, by beam search with the model's caches.

  Made for the encoder-decoder `Transformer` (pass `inputs`, the source tokens `(batch,
  input_length)`; its encoder runs once, for all beams); decoder-only models work too
  (`inputs=None`, optional `prefix`, or the prompt as `inputs` as in Trax). A beam ends when it
  emits `eos_id`; finished beams are ranked by `log p / ((5 + length) / 6) ** alpha` (GNMT's
  length penalty), and the search stops early once no alive beam can beat them. Trax's names
  are accepted: `n_beams` (= `beam_size`), `length_penalty` (= `alpha`), `batch_size`
  (checked against the inputs), `accelerate` (False: run without `jax.jit`).

  **Returns** `(sequences, scores)`: int32 `(batch, beam_size, max_length)` best first (tokens
  after `eos_id` are 0) and float32 `(batch, beam_size)`. Rows where no beam finished return
  the alive beams. With `beam_size=1` and no `eos_id` this is greedy decoding. (Trax returns a
  list of `(sequence, score)` pairs and supports only `batch_size=1`.)

  ```python
  seqs, scores = beam_search(model, {'params': params}, inputs=source, max_length=20,
                             beam_size=4, eos_id=1)
  best = seqs[:, 0]
  ```
  """
  beam_size = beam_size if n_beams is None else n_beams
  alpha = alpha if length_penalty is None else length_penalty
  if max_length < 1 or beam_size < 1:
    raise ValueError(f"max_length and beam_size must be >= 1, got {max_length}, {beam_size}")
  prefix, inputs = _resolve_inputs(model, inputs, prefix, batch_size)
  search = functools.partial(
      _beam_search, with_mode(model, "predict"), _variables(variables), prefix, inputs,
      max_length=int(max_length), beam_size=int(beam_size), alpha=float(alpha), eos_id=eos_id,
      start_id=int(start_id))
  if accelerate:
    return search()
  with jax.disable_jit():
    return search()
