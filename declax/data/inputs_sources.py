"""Stream sources with Trax's names: `TFDS` (declax's offline datasets through the registry),
`Inputs`, and Trax's synthetic tasks (`sequence_copy_inputs`, `simple_sequence_copy_inputs`,
`addition_inputs`, `sine_inputs`), all checkpointable `Stream`s.

```python
from declax import data
inputs = data.addition_inputs(vocab_size=12, batch_size=4, train_length=16,
                              eval_min_length=8, eval_max_length=16, pad_to_multiple=16)
x, y, weights = next(inputs.train_stream(1))       # int (4, 16) each
```
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from typing import Any

import grain
import numpy as np

from declax.data.inputs import pad_to_max_dims
from declax.data.inputs_stream import StageDataset, StageLogic, Stream, fmt_args

__all__ = ["TFDS", "Inputs", "addition_input_stream", "addition_inputs", "sequence_copy_inputs",
           "simple_sequence_copy_inputs", "sine_inputs"]


class _PassThrough(StageLogic):
  def next(self, parents):
    return next(parents[0])


def _epoch_order(seed: int, n: int, shuffle: bool) -> Callable[[int], int]:
  @functools.lru_cache(maxsize=2)
  def order(epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)

  def index(i: int) -> int:
    return int(order(i // n)[i % n]) if shuffle else i % n

  return index


def TFDS(dataset_name: str, data_dir: str | None = None,  # noqa: N802 - Trax's name
         tfds_preprocess_fn: Callable[[dict], dict] | None = None, keys: tuple | None = None,
         train: bool = True, use_alt_eval: bool = False, shuffle_train: bool = True,
         host_id: int | None = None, n_hosts: int | None = None, eval_holdout_size: float = 0,
         *, seed: int = 0) -> Callable[..., Stream]:
  """Trax's `TFDS` source over declax's datasets (prepared offline, read without TensorFlow):
  an endless stream of `tuple(example[k] for k in keys)` (whole dicts when `keys` is None).

  `train` picks the dataset's train split, else its eval split (`DatasetSpec.splits`);
  `eval_holdout_size` (a fraction) cuts the eval data off the end of the train split instead.
  Training data is reshuffled every epoch from `seed` (declax); each host reads every
  `n_hosts`-th example from `host_id`. `tfds_preprocess_fn` maps each example dict (Trax maps a
  tf.data dataset). `use_alt_eval` has no effect (it picks glue/mnli's mismatched split in Trax).

  >>> stream = TFDS('declax_digits', keys=('image', 'label'))()
  >>> image, label = next(stream)
  """
  import jax

  from declax.data.pipeline import _check_split
  from declax.data.sources import prepare

  del use_alt_eval
  spec, builder = prepare(dataset_name, data_dir)
  train_split, eval_split = spec.splits
  split = train_split if train else eval_split
  if eval_holdout_size:
    if not 0 < eval_holdout_size < 1:
      raise ValueError(f"TFDS: eval_holdout_size is a fraction in (0, 1), got {eval_holdout_size}")
    n = builder.info.splits[train_split].num_examples
    cut = n - int(n * eval_holdout_size)
    split = f"{train_split}[:{cut}]" if train else f"{train_split}[{cut}:]"
  _check_split(dataset_name, builder, split)
  host_id = jax.process_index() if host_id is None else host_id
  n_hosts = n_hosts or jax.process_count()
  keys = None if keys is None else tuple(keys)
  name = fmt_args("TFDS", dataset_name=dataset_name, keys=keys, split=split,
                  shuffle=train and shuffle_train, host_id=host_id, n_hosts=n_hosts, seed=seed)

  def select(example: dict) -> Any:
    if tfds_preprocess_fn is not None:
      example = tfds_preprocess_fn(example)
    if keys is None:
      return example
    missing = [k for k in keys if k not in example]
    if missing:
      raise KeyError(f"TFDS({dataset_name!r}): no feature {missing} (features: {list(example)})")
    return tuple(example[k] for k in keys)

  def gen(generator: Any = None) -> Stream:
    del generator
    source = grain.MapDataset.source(builder.as_data_source(split=split))[host_id::n_hosts]
    index = _epoch_order(seed, len(source), train and shuffle_train)
    dataset = (
        grain.MapDataset.range(sys.maxsize).map(lambda i: select(source[index(i)]))
        .to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=64)))
    return Stream(StageDataset([dataset], _PassThrough, name))

  return gen


class Inputs:
  """Trax's `Inputs`: train/eval stream factories taking `n_devices`, with example shapes.

  >>> inputs = Inputs(lambda _: my_batches())
  >>> inputs.input_shape                     # without the batch axis
  """

  def __init__(self, train_stream: Callable[[int], Any], eval_stream: Callable | None = None,
               train_eval_stream: Callable | None = None):
    if not callable(train_stream):
      raise ValueError("Trax Inputs should be initialized with a function. Did you forget the "
                       "n_devices argument? If your inputs do not use it, try "
                       "lambda _: [your-inputs].")
    self._train_stream = train_stream
    self._eval_stream = eval_stream or train_stream
    self._train_eval_stream = train_eval_stream or train_stream
    example = next(iter(train_stream(1)))
    self._input_shape, self._input_dtype = tuple(example[0].shape)[1:], example[0].dtype
    self._target_shape, self._target_dtype = tuple(example[-1].shape)[1:], example[-1].dtype
    self._example_shape = [x.shape for x in example]
    self._example_dtype = [x.dtype for x in example]

  def train_stream(self, n_devices: int) -> Any:
    return self._train_stream(n_devices)

  def eval_stream(self, n_devices: int) -> Any:
    return self._eval_stream(n_devices)

  def train_eval_stream(self, n_devices: int) -> Any:
    return self._train_eval_stream(n_devices)

  input_shape = property(lambda self: self._input_shape)
  input_dtype = property(lambda self: self._input_dtype)
  target_shape = property(lambda self: self._target_shape)
  target_dtype = property(lambda self: self._target_dtype)
  example_shape_dtype = property(lambda self: (self._example_shape, self._example_dtype))


class _RandomBatches(StageLogic):
  """Endless batches drawn by `make(rng)`; the generator's state is the position."""

  def __init__(self, make: Callable[[np.random.Generator], Any], seed: int):
    self.make, self.rng = make, np.random.default_rng(seed)

  def next(self, parents):
    return self.make(self.rng)

  def get_state(self):
    return self.rng.bit_generator.state

  def set_state(self, state):
    self.rng.bit_generator.state = state


def _random_stream(name: str, make: Callable[[np.random.Generator], Any], seed: int) -> Stream:
  return Stream(StageDataset([], lambda: _RandomBatches(make, seed), f"{name}[seed={seed}]"))


def _pad_to_multiple_of(x: np.ndarray, multiple: int, axis: int) -> np.ndarray:
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, int(math.ceil(x.shape[axis] / multiple) * multiple) - x.shape[axis])
  return np.pad(x, widths, constant_values=x.dtype.type(0))


def _copy_inputs(name: str, batches: Callable, train: list[int], evals: list[int],
                 seed: int) -> Inputs:
  return Inputs(
      train_stream=lambda _: _random_stream(name, functools.partial(batches, train), seed),
      eval_stream=lambda _: _random_stream(name, functools.partial(batches, evals), seed + 1))


def sequence_copy_inputs(vocab_size: int, batch_size: int, train_length: int,
                         eval_min_length: int, eval_max_length: int, reverse: bool = False,
                         pad_to_multiple: int = 32, seed: int = 0) -> Inputs:
  """Trax's copy task: `0 w 0 w` (or `0 w 0 reversed(w)`), `w` in `[1, vocab_size - 1)`,
  loss weights on the second `w`; lengths of `0w0w` are even, up to `2 * train_length + 2`."""
  def batches(lengths, rng):
    length = int(rng.choice(lengths))
    w_length = length // 2 - 1
    w = rng.integers(1, vocab_size - 1, size=(batch_size, w_length))
    zero = np.zeros([batch_size, 1], w.dtype)
    weights = np.concatenate([np.zeros((batch_size, w_length + 2)),
                              np.ones((batch_size, w_length))], axis=1)
    x = np.concatenate([zero, w, zero, np.flip(w, axis=1) if reverse else w], axis=1)
    return (_pad_to_multiple_of(x, pad_to_multiple, 1), _pad_to_multiple_of(x, pad_to_multiple, 1),
            _pad_to_multiple_of(weights, pad_to_multiple, 1))

  train = [2 * (i + 2) for i in range(train_length - 1)]
  evals = [2 * (i + 1) for i in range(eval_min_length, eval_max_length)]
  name = fmt_args("sequence_copy_inputs", vocab_size=vocab_size, batch_size=batch_size,
                  reverse=reverse)
  return _copy_inputs(name, batches, train, evals, seed)


def simple_sequence_copy_inputs(vocab_size: int, batch_size: int, train_length: int,
                                eval_min_length: int, eval_max_length: int,
                                pad_to_multiple: int = 32, seed: int = 0) -> Inputs:
  """Trax's simple copy task: inputs = targets = `w`, `w` in `[1, vocab_size - 1)`."""
  def batches(lengths, rng):
    length = int(rng.choice(lengths))
    x = rng.integers(1, vocab_size - 1, size=(batch_size, length))
    weights = np.ones((batch_size, length))
    x = _pad_to_multiple_of(x, pad_to_multiple, 1)
    return (x, x, _pad_to_multiple_of(weights, pad_to_multiple, 1))

  train = list(range(1, train_length + 1))
  evals = list(range(eval_min_length, eval_max_length + 1))
  name = fmt_args("simple_sequence_copy_inputs", vocab_size=vocab_size, batch_size=batch_size)
  return _copy_inputs(name, batches, train, evals, seed)


def _digits(n: int, base: int) -> list[int]:
  out = [n % base]
  while n >= base:
    n //= base
    out.append(n % base)
  return out


def _random_number(length: int, base: int, rng: np.random.Generator) -> list[int]:
  if length == 1:
    return [int(rng.integers(base))]
  return [int(d) for d in rng.integers(base, size=length - 1)] + [int(rng.integers(base - 1)) + 1]


def addition_input_stream(vocab_size: int, batch_size: int, min_length: int, max_length: int,
                          pad_to_multiple: int = 32, encdec: bool = False,
                          seed: int = 0) -> Stream:
  """Trax's addition task, `<S>x+y<S>(x+y)` in lower-endian base `vocab_size - 3` (0 pads,
  `base + 1` is '+', `base + 2` is '<S>'); with `encdec`, `(x+y, sum, weights)`."""
  if max_length < 3 or min_length < 3:
    raise ValueError("Maximum/minimum length must be at least 3.")
  base = vocab_size - 3

  def example(rng):
    while True:
      add_len = (min_length - 1) // 2
      l1 = int(rng.integers((max_length - add_len + 1) // 2)) + add_len
      l2 = int(rng.integers(max_length - l1 - 1)) + 1
      n1, n2 = _random_number(l1, base, rng), _random_number(l2, base, rng)
      value = sum(d * base**i for i, d in enumerate(n1))
      value += sum(d * base**i for i, d in enumerate(n2))
      inp, tgt = n1 + [base] + n2, _digits(value, base)
      if encdec:
        x, y = np.array([i + 1 for i in inp]), np.array([i + 1 for i in tgt])
        if max(len(x), len(y)) <= max_length:
          return (x, y, np.ones(len(tgt), np.int64))
        continue
      x = np.array([base + 2] + [i + 1 for i in inp] + [base + 2] + [i + 1 for i in tgt])
      return (x, x, np.array([0] * (len(inp) + 2) + [1] * len(tgt)))

  def batches(rng):
    examples = [example(rng) for _ in range(batch_size)]
    return tuple(pad_to_max_dims(list(x), boundary=pad_to_multiple, strict_pad_on_len=True)
                 for x in zip(*examples, strict=True))

  name = fmt_args("addition_input_stream", vocab_size=vocab_size, batch_size=batch_size,
                  min_length=min_length, max_length=max_length, encdec=encdec)
  return _random_stream(name, batches, seed)


def addition_inputs(vocab_size: int, batch_size: int, train_length: int, eval_min_length: int,
                    eval_max_length: int, pad_to_multiple: int = 32, encdec: bool = False,
                    seed: int = 0) -> Inputs:
  """Trax's `addition_inputs`: train sums up to `train_length` symbols, eval ones between
  `eval_min_length` and `eval_max_length`."""
  train = addition_input_stream(vocab_size, batch_size, 3, train_length, pad_to_multiple,
                                encdec, seed)
  evals = addition_input_stream(vocab_size, batch_size, eval_min_length, eval_max_length,
                                pad_to_multiple, encdec, seed + 1)
  return Inputs(train_stream=lambda _: train, eval_stream=lambda _: evals)


def sine_inputs(batch_size: int, length: int, max_phase: float = 2 * math.pi,
                min_period: float = 0.1, max_period: float = 10.0, seed: int = 0) -> Inputs:
  """Trax's sinusoids of random phase and period: `(obs, actions=0, obs, mask=1)`."""
  def batches(rng):
    phase = rng.uniform(0, max_phase, size=(batch_size, 1))
    period = np.exp(rng.uniform(np.log(min_period), np.log(max_period), size=(batch_size, 1)))
    obs = np.sin((np.arange(length) - phase) / period)
    return (obs, np.zeros_like(obs, np.int32), obs, np.ones_like(obs))

  name = fmt_args("sine_inputs", batch_size=batch_size, length=length)
  return Inputs(train_stream=lambda _: _random_stream(name, batches, seed),
                eval_stream=lambda _: _random_stream(name, batches, seed + 1))
