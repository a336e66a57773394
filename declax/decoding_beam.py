"""Beam search with the models' `'predict'` mode (re-exported by `declax.decoding`).

The first call (the encoder, the start token and the prefix) is the same for every beam of an
input, so it runs once per input; its cache is then repeated once per beam. Each later step
reorders the cache rows by the beams' parents and feeds one token per beam; the whole search is
one jitted `jax.lax.while_loop`.

```python
seqs, scores = beam_search(transformer, {'params': p}, inputs=source, max_length=32,
                           beam_size=4, eos_id=1)            # (batch, 4, 32), (batch, 4)
```
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.decoding_cache import (
    batch_axes,
    cache_lengths,
    check_fits,
    gather_rows,
    init_cache,
    repeat_rows,
    resolve_inputs,
    step,
    strip_cache,
)
from declax.layers.base import with_mode

__all__ = ["beam_search"]

NEG_INF = -1.0e7  # a finite "minus infinity" for log-probabilities (no inf - inf NaNs)


def _length_penalty(length: jax.Array | int, alpha: float) -> jax.Array:
  """GNMT's `((5 + length) / 6) ** alpha`."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


@functools.partial(jax.jit, static_argnames=("model", "max_length", "beam_size", "alpha",
                                             "eos_id", "start_id"))
def _beam_search(model: nn.Module, variables: dict, prefix: jax.Array, inputs: jax.Array | None,
                 *, max_length: int, beam_size: int, alpha: float, eos_id: int | None,
                 start_id: int) -> tuple[jax.Array, jax.Array]:
  batch, k = prefix.shape[0], beam_size
  axes = batch_axes(model, inputs)
  cache = init_cache(model, batch, inputs)
  check_fits(model, cache_lengths(cache), prefix.shape[1], max_length)
  # The first call (encoder, start token, prefix) is the same for every beam of an input: run
  # it once per input, then give each beam its copy (row b*k + j) of the cache and logits.
  first = jnp.concatenate([jnp.full((batch, 1), start_id, jnp.int32), prefix], axis=1)
  logits, cache = step(model, variables, cache, first, inputs)
  cache = repeat_rows(cache, k, axes)
  logits = jnp.repeat(logits, k, axis=0)
  inputs = None if inputs is None else jnp.repeat(inputs, k, axis=0)
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
    cache = gather_rows(s["cache"], parents, axes)
    logits, cache = step(model, variables, cache, alive_token.reshape(-1, 1), inputs)
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
  prefix, inputs = resolve_inputs(model, inputs, prefix, batch_size)
  search = functools.partial(
      _beam_search, with_mode(model, "predict"), strip_cache(variables), prefix, inputs,
      max_length=int(max_length), beam_size=int(beam_size), alpha=float(alpha), eos_id=eos_id,
      start_id=int(start_id))
  if accelerate:
    return search()
  with jax.disable_jit():
    return search()
