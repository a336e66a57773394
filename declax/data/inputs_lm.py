"""Trax's language-model stream steps: `ConcatenateToLMInput`, `PrefixLM` and `MLM` (T5's span
corruption), each a function from a stream to a checkpointable `Stream`.

```python
import numpy as np
from declax import data
lm = data.ConcatenateToLMInput(pad_to_length=8)
inputs, targets, weights = next(lm([(np.array([1, 2, 3]), np.array([4, 5]))]))
assert weights.tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
```
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from declax.data.inputs import Serial
from declax.data.inputs_stream import StageLogic, flat_map_stage, fmt_args, map_stage, stage

__all__ = ["ConcatenateToLMInput", "MLM", "PrefixLM", "consume_noise_mask",
           "generate_random_noise_mask", "generate_sequential_chunks", "random_spans_noise_mask"]


def _concatenate(example: Any, pad_to_length: int | None) -> tuple:
  if isinstance(example, (list, tuple)) and len(example) == 2:
    inputs, targets = np.asarray(example[0]), np.asarray(example[1])
    joined = np.concatenate((inputs, targets), axis=-1)
    weights = np.concatenate((np.zeros_like(inputs), np.ones_like(targets)))
    if pad_to_length is not None:
      padding = pad_to_length - (inputs.shape[0] + targets.shape[0])
      if padding < 0:
        raise ValueError(f"Example lengths ({inputs.shape[0]}, {targets.shape[0]}) longer than "
                         f"pad_to_length ({pad_to_length}).")
      weights, joined = np.pad(weights, (0, padding)), np.pad(joined, (0, padding))
    return (joined, joined, weights)
  if isinstance(example, (list, tuple)) and len(example) == 1:
    return (example[0], example[0])
  if isinstance(example, np.ndarray):
    return (example, example)
  raise ValueError(f"Unknown input to ConcatenateToLMInput: {example}")


def ConcatenateToLMInput(pad_to_length: int | None = None):  # noqa: N802 - Trax's name
  """`(inputs, targets) -> (joined, joined, weights)` with weights 1 on the targets only,
  padded to `pad_to_length` if given (a language model trained to continue `inputs`)."""
  return map_stage(fmt_args("ConcatenateToLMInput", pad_to_length=pad_to_length),
                   lambda x: _concatenate(x, pad_to_length))


def PrefixLM(input_length: int = 128, output_length: int = 512):  # noqa: N802
  """Cuts each token sequence into `(input, output)` chunks of `input_length` and up to
  `output_length` tokens; a last piece without output is dropped.

  >>> list(PrefixLM(2, 3)([[1, 2, 3, 4, 5, 6, 7, 8]]))
  [([1, 2], [3, 4, 5]), ([6, 7], [8])]
  """
  def chunks(example):
    out, begin, n = [], 0, len(example)
    while begin + input_length < n:
      end = begin + input_length
      stop = min(end + output_length, n)
      out.append((example[begin:end], example[end:stop]))
      begin = stop
    return out

  return flat_map_stage(fmt_args("PrefixLM", input_length=input_length,
                                 output_length=output_length), chunks)


def generate_sequential_chunks(max_length: int | None = None):
  """Splits sequences longer than `max_length` into consecutive chunks of at most that."""
  def chunks(example):
    n = len(example)
    if n <= max_length:
      return [example]
    return [example[i * max_length:min((i + 1) * max_length, n)]
            for i in range(math.ceil(n / max_length))]

  return flat_map_stage(fmt_args("generate_sequential_chunks", max_length=max_length), chunks)


def random_spans_noise_mask(length: int, noise_density: float = 0.15,
                            mean_noise_span_length: float = 3.0, seed1: int | None = None,
                            seed2: int | None = None, example: Any = None,
                            rng: np.random.Generator | None = None) -> np.ndarray:
  """T5's span-corruption mask (Trax's): a boolean array with `round(length * noise_density)`
  noise tokens in spans of mean length `mean_noise_span_length`. Seeds make it reproducible
  (as Trax's); without them `rng` (declax) or NumPy's global generator draws the spans."""
  del example
  orig_length, length = length, max(length, 2)
  num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
  num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)

  def segment(num_items, seed):
    first = np.arange(num_items - 1) < num_spans - 1
    if seed is not None:
      np.random.RandomState(seed).shuffle(first)
    elif rng is not None:
      rng.shuffle(first)
    else:
      np.random.shuffle(first)
    segment_id = np.cumsum(np.pad(first, (1, 0)))
    return np.bincount(segment_id, minlength=num_spans)

  noise_lengths = segment(num_noise, seed1)
  nonnoise_lengths = segment(length - num_noise, seed2)
  interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
  starts = np.zeros(length)
  starts[np.cumsum(interleaved)[:-1]] = 1
  return (np.cumsum(starts) % 2 == 1)[:orig_length]


class _NoiseMask(StageLogic):
  def __init__(self, noise_density, mean_noise_span_length, seed1, seed2, seed):
    self.args = (noise_density, mean_noise_span_length, seed1, seed2)
    self.rng = np.random.default_rng(seed)

  def next(self, parents):
    example = next(parents[0])
    density, span, seed1, seed2 = self.args
    return (example, random_spans_noise_mask(len(example), density, span, seed1, seed2,
                                             rng=self.rng))

  def get_state(self):
    return self.rng.bit_generator.state

  def set_state(self, state):
    self.rng.bit_generator.state = state


def generate_random_noise_mask(noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                               seed1: int | None = None, seed2: int | None = None,
                               seed: int = 0):
  """`tokens -> (tokens, noise_mask)` with `random_spans_noise_mask`; `seed` (declax) seeds the
  saved generator used when `seed1`/`seed2` are None."""
  name = fmt_args("generate_random_noise_mask", noise_density=noise_density,
                  mean_noise_span_length=mean_noise_span_length, seed1=seed1, seed2=seed2,
                  seed=seed)
  return stage(name, lambda: _NoiseMask(noise_density, mean_noise_span_length, seed1, seed2,
                                        seed))


def _to_sentinels(tokens: np.ndarray, noise_mask: np.ndarray, vocab_size: int) -> np.ndarray:
  previous_noise = np.pad(noise_mask[:-1], [1, 0], constant_values=False)
  first_noise = noise_mask & ~previous_noise
  later_noise = noise_mask & previous_noise
  sentinel = vocab_size - np.cumsum(first_noise)
  return np.where(first_noise, sentinel, tokens)[~later_noise]


def consume_noise_mask(vocab_size: int = 32100):
  """`(tokens, noise_mask) -> (inputs, targets)`: each noise span becomes one sentinel id
  (`vocab_size - 1`, `vocab_size - 2`, ...) in the inputs, and the reverse in the targets."""
  def consume(example):
    tokens, mask = np.asarray(example[0]), np.asarray(example[1], bool)
    return (_to_sentinels(tokens, mask, vocab_size), _to_sentinels(tokens, ~mask, vocab_size))

  return map_stage(fmt_args("consume_noise_mask", vocab_size=vocab_size), consume)


def MLM(vocab_size: int | None = None, max_length: int | None = None,  # noqa: N802
        noise_density: float = 0.15, mean_noise_span_length: float = 3.0):
  """Masked-language-model pairs (T5 span corruption): chunks of `max_length` tokens, random
  noise spans replaced by sentinel ids counted down from `vocab_size`."""
  return Serial(
      generate_sequential_chunks(max_length=max_length),
      generate_random_noise_mask(noise_density=noise_density,
                                 mean_noise_span_length=mean_noise_span_length),
      consume_noise_mask(vocab_size=vocab_size),
  )
