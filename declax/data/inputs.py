"""Trax's stream combinators (`trax.data.inputs`) on grain, with exact, checkpointable resume.

Each combinator returns a function from a stream to a `Stream`; `Serial` chains them, and the
resulting `Stream` saves its position, shuffle buffers and half-filled buckets included, with
`get_state()` (JSON), so it can be a `TrainTask`'s labeled_data.

```python
import numpy as np
from declax import data
pipeline = data.Serial(
    lambda _: ((np.arange(1, n % 7 + 2), np.arange(1, n % 7 + 2)) for n in range(1000)),
    data.Shuffle(queue_size=16),
    data.BucketByLength(boundaries=[4], batch_sizes=[8, 4], length_keys=[0]),
    data.AddLossWeights(id_to_mask=0))
stream = pipeline()
inputs, targets, weights = next(stream)
state = stream.get_state()        # resume: pipeline().set_state(state)
```
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import logging

from declax.data.inputs_examples import (  # noqa: F401 - Trax's data.inputs names
    AddLossWeights,
    AppendValue,
    CastTo,
    CountAndSkip,
    FilterByLength,
    FilterEmptyExamples,
    Log,
    PadToLength,
    TruncateToLength,
    _length_fn,
    add_loss_weights,
    count_and_skip,
    data_counters,
)
from declax.data.inputs_stream import (
    StageDataset,
    StageLogic,
    Stream,
    as_dataset,
    flat_map_stage,
    fmt_args,
    map_stage,
    stage,
    to_stream,
)
from declax.errors import DeclaxError

__all__ = [
    "AddLossWeights", "AppendValue", "Batch", "BucketByLength", "CastTo", "CountAndSkip", "Dup",
    "FilterByLength", "FilterEmptyExamples", "Log", "PadToLength", "Parallel", "Serial",
    "Shuffle", "TruncateToLength", "UnBatch", "add_loss_weights", "batch", "bucket_by_length",
    "count_and_skip", "data_counters", "pad_to_max_dims", "shuffle",
]  # fmt: skip


class BucketError(DeclaxError, ValueError):
  """`BucketByLength` boundaries and batch sizes that do not fit together."""


def _flatten(fns: Any) -> list:
  if isinstance(fns, (list, tuple)):
    return [f for x in fns for f in _flatten(x)]
  return [fns]


def Serial(*fns: Any) -> Callable[..., Stream]:  # noqa: N802 - Trax's name
  """Chains stream functions: `Serial(f, g, h)(gen) == h(g(f(gen)))`, as a `Stream`.

  The first function usually ignores its argument and creates the data (`lambda _: ...`,
  `TFDS(...)`); plain Python functions work anywhere (their position is restored by re-reading).

  >>> batches = Serial(lambda _: ((i, i + 1) for i in range(10)), Shuffle(3), Batch(10))
  >>> next(batches())[0].shape
  (10,)
  """
  fns = _flatten(fns)

  def composed(generator: Any = None) -> Stream:
    for f in fns:
      generator = f(generator)
    return to_stream(generator)

  return composed


def _gradual_schedule(counters: list[int], use_remainders: bool) -> list[int]:
  """One period of Trax's `gradually_reweight` order, as indices of the input streams."""
  order: list[int] = []
  ranked = sorted(range(len(counters)), key=lambda i: counters[i])

  def emit(level: int, prev: int) -> None:
    if level < len(ranked):
      for _ in range(math.floor(counters[ranked[level]] / prev)):
        order.append(ranked[level])
        emit(level + 1, counters[ranked[level]])

  emit(0, min(counters))
  if use_remainders:
    fractions: list[int] = []
    for level, i in enumerate(ranked):
      order.extend([i] * (counters[i] - math.prod(fractions)))
      if level < len(ranked) - 1:
        fractions.append(math.floor(counters[ranked[level + 1]] / counters[i]))
  return order


class _Interleave(StageLogic):
  """Trax's round robin: stream `i` gives `counters[i]` examples per round (all restart when
  every counter is used up); or a fixed `schedule` of stream indices, repeated."""

  def __init__(self, counters: list[int], schedule: list[int] | None):
    self.counters, self.schedule = counters, schedule
    self.current, self.position = [0] * len(counters), 0

  def next(self, parents):
    if self.schedule is not None:
      i = self.schedule[self.position]
      self.position = (self.position + 1) % len(self.schedule)
      return next(parents[i])
    while True:
      i, self.position = self.position, (self.position + 1) % len(self.counters)
      if self.current[i] < self.counters[i]:
        self.current[i] += 1
        if sum(self.current) == sum(self.counters):
          self.current = [0] * len(self.counters)
        return next(parents[i])

  def get_state(self):
    return {"current": self.current, "position": self.position}

  def set_state(self, state):
    self.current, self.position = list(state["current"]), int(state["position"])


def Parallel(fns: Sequence[Callable] | None = None, counters: Sequence[int] | None = None,  # noqa: N802
             reweight_by_minimum: bool = False, gradually_reweight: bool = False,
             use_remainders: bool = False) -> Callable[..., Stream]:
  """Mixes streams: Trax's `Parallel` (round robin, or `counters` examples from each in turn;
  see Trax for `reweight_by_minimum`, `gradually_reweight`, `use_remainders`).

  >>> mixed = Parallel([lambda: iter(range(10)), lambda: iter(range(10, 20))], counters=(2, 1))
  >>> [next(s) for s in [mixed()] for _ in range(6)]
  [0, 10, 1, 11, 2, 3]
  """
  fns = list(fns or [])
  if counters:
    if len(counters) != len(fns):
      raise ValueError(f"Parallel: {len(counters)} counters for {len(fns)} streams")
    kept = [j for j, c in enumerate(counters) if c != 0]
    fns, counters = [fns[j] for j in kept], [int(counters[j]) for j in kept]
  else:
    counters = [1] * len(fns)
  if not fns:
    raise ValueError("Parallel needs at least one stream with a non-zero counter")
  if reweight_by_minimum:
    counters = [math.floor(c / min(counters)) for c in counters]
  schedule = _gradual_schedule(counters, use_remainders) if gradually_reweight else None
  name = fmt_args("Parallel", counters=counters, gradually_reweight=gradually_reweight,
                  use_remainders=use_remainders)

  def parallel(gen: Any = None) -> Stream:
    streams = [f(gen) if gen else f() for f in fns]
    parents = [as_dataset(s, "Parallel") for s in streams]
    return Stream(StageDataset(parents, lambda: _Interleave(counters, schedule), name))

  return parallel


def Dup() -> Callable[[Any], Stream]:  # noqa: N802
  """`(x, *rest) -> (x, x, *rest)`: e.g. a language model's inputs are its targets."""
  return map_stage("Dup()", lambda xs: (xs[0], xs[0], *xs[1:]))


# ---------------------------------------------------------------- shuffling and batching
class _ShuffleQueue(StageLogic):
  """Trax's random-out, next-in queue; queue and random state are saved."""

  def __init__(self, queue_size: int, seed: int):
    self.queue_size, self.rng = queue_size, np.random.default_rng(seed)
    self.queue: list = []
    self.phase = "fill"

  def next(self, parents):
    if self.phase == "fill":
      try:
        while len(self.queue) < self.queue_size:
          self.queue.append(next(parents[0]))
        self.phase = "stream"
      except StopIteration:
        self._start_drain()
    if self.phase == "stream":
      try:
        sample = next(parents[0])
      except StopIteration:
        self._start_drain()
      else:
        i = int(self.rng.integers(self.queue_size))
        out, self.queue[i] = self.queue[i], sample
        return out
    if not self.queue:
      raise StopIteration
    return self.queue.pop(0)

  def _start_drain(self):
    if len(self.queue) < self.queue_size:
      logging.warning("Not enough samples (%d) to fill the shuffle queue (size %d).",
                      len(self.queue), self.queue_size)
    order = self.rng.permutation(len(self.queue))
    self.queue, self.phase = [self.queue[i] for i in order], "drain"

  def get_state(self):
    return {"phase": self.phase, "queue": self.queue, "rng": self.rng.bit_generator.state}

  def set_state(self, state):
    self.phase, self.queue = state["phase"], list(state["queue"])
    self.rng.bit_generator.state = state["rng"]


def Shuffle(queue_size: int = 1024, seed: int = 0) -> Callable[[Any], Stream]:  # noqa: N802
  """Shuffles with a queue of `queue_size` examples (Trax's); `seed` (declax) fixes the order."""
  if not isinstance(queue_size, int) or queue_size < 1:
    raise ValueError(f"Shuffle: queue_size ({queue_size}) is less than 1")
  if queue_size == 1:
    logging.warning("Queue size of 1 results in no shuffling.")
  return stage(fmt_args("Shuffle", queue_size=queue_size, seed=seed),
               lambda: _ShuffleQueue(queue_size, seed))


def shuffle(samples: Any, queue_size: int, seed: int = 0) -> Stream:
  """Trax's `shuffle(samples, queue_size)`: `Shuffle(queue_size)(samples)`."""
  return Shuffle(queue_size, seed)(samples)


def pad_to_max_dims(tensors: Sequence[Any], boundary: int | Sequence[int | None] | None = None,
                    strict_pad_on_len: bool = False) -> np.ndarray:
  """Stacks `tensors`, zero-padding every axis to the largest size (Trax's semantics).

  With `boundary`, axes are padded up to it (to the next power of 2 when that is under half of
  it); with `strict_pad_on_len` or a per-axis list, to a multiple of it.

  >>> pad_to_max_dims([np.zeros((2, 10)), np.ones((3, 9))], 12).shape
  (2, 4, 12)
  """
  tensors = [np.asarray(t) for t in tensors]
  ndim = tensors[0].ndim
  sizes = [max(t.shape[i] for t in tensors) for i in range(ndim)]
  if boundary is not None and (strict_pad_on_len or isinstance(boundary, (list, tuple))):
    bounds = list(boundary) if isinstance(boundary, (list, tuple)) else [boundary] * ndim
    if len(bounds) != ndim:
      raise ValueError(f"ndim != len(boundary) - ndim({ndim}) vs boundary({boundary})")
    target = [s if not b else b * math.ceil(s / b) for s, b in zip(sizes, bounds, strict=True)]
  else:
    target = []
    for i, size in enumerate(sizes):
      smallest = min(t.shape[i] for t in tensors)
      if boundary is None or (size == smallest == boundary):
        target.append(size)
      else:
        bound = max(size, boundary)
        target.append(2 ** int(np.ceil(np.log2(size))) if 2 * size < bound else bound)
  padded = []
  for t in tensors:
    widths = [(0, n - s) for n, s in zip(target, t.shape, strict=True)]
    padded.append(np.pad(t, widths, constant_values=t.dtype.type(0)) if t.ndim else t)
  return np.stack(padded)


def _pad_batch(examples: list, boundary: Any = None, strict: bool = False) -> Any:
  if isinstance(examples[0], dict):  # declax: dict examples batch key by key
    return {k: pad_to_max_dims([e[k] for e in examples], boundary, strict) for k in examples[0]}
  if isinstance(examples[0], (tuple, list)):
    return tuple(pad_to_max_dims(list(x), boundary, strict) for x in zip(*examples, strict=True))
  return pad_to_max_dims(examples, boundary, strict)


class _Batcher(StageLogic):
  def __init__(self, batch_size: int):
    self.batch_size = batch_size

  def next(self, parents):
    return _pad_batch([next(parents[0]) for _ in range(self.batch_size)])


def Batch(batch_size: int) -> Callable[[Any], Stream]:  # noqa: N802
  """Groups `batch_size` examples, zero-padding each item to the longest (Trax's `Batch`)."""
  if not isinstance(batch_size, int) or batch_size <= 0:
    raise ValueError(f"Batch size must be positive, but is {batch_size}.")
  return stage(fmt_args("Batch", batch_size=batch_size), lambda: _Batcher(batch_size))


def batch(generator: Any, batch_size: int) -> Stream:
  """Trax's `batch(generator, batch_size)`."""
  return Batch(batch_size)(generator)


def _unbatch(batched: Any) -> list:
  if not isinstance(batched, tuple):
    raise ValueError(f"UnBatch takes tuples of arrays, got {type(batched).__name__}")
  sizes = {np.shape(x)[0] for x in batched}
  if len(sizes) != 1:
    raise ValueError(f"UnBatch: the items have different batch sizes {sorted(sizes)}")
  return [tuple(x[i] for x in batched) for i in range(sizes.pop())]


def UnBatch() -> Callable[[Any], Stream]:  # noqa: N802
  """Splits batches (tuples of arrays) back into examples."""
  return flat_map_stage("UnBatch()", _unbatch)


class _Buckets(StageLogic):
  """Half-filled buckets are part of the state."""

  def __init__(self, length_fn, boundaries, batch_sizes, strict):
    self.length_fn, self.strict = length_fn, strict
    self.boundaries, self.batch_sizes = list(boundaries) + [math.inf], list(batch_sizes)
    self.buckets: list[list] = [[] for _ in batch_sizes]

  def next(self, parents):
    while True:
      example = next(parents[0])
      length = self.length_fn(example)
      i = next(j for j, b in enumerate(self.boundaries) if length <= b)
      if i == len(self.batch_sizes):
        raise BucketError(
            f"BucketByLength: an example of length {length} is longer than the last boundary "
            f"{self.boundaries[-2]}, and no batch size is given for longer examples (pass "
            "len(boundaries) + 1 batch sizes, or FilterByLength(max_length) before)")
      self.buckets[i].append(example)
      if len(self.buckets[i]) == self.batch_sizes[i]:
        full, self.buckets[i] = self.buckets[i], []
        bound = None if self.boundaries[i] == math.inf else self.boundaries[i]
        return _pad_batch(full, bound, self.strict)

  def get_state(self):
    return self.buckets

  def set_state(self, state):
    self.buckets = [list(b) for b in state]


def _check_buckets(boundaries: Sequence[int], batch_sizes: Sequence[int]) -> None:
  if len(batch_sizes) not in (len(boundaries), len(boundaries) + 1):
    raise BucketError(
        f"BucketByLength: {len(boundaries)} boundaries {list(boundaries)} need "
        f"{len(boundaries) + 1} batch sizes (one per bucket, the last for longer examples; "
        f"Trax's own tests also pass {len(boundaries)}, with no bucket for longer examples), "
        f"got {len(batch_sizes)}: {list(batch_sizes)}")
  if any(b >= c for b, c in zip(boundaries, boundaries[1:], strict=False)):
    raise BucketError(f"BucketByLength: boundaries must increase, got {list(boundaries)}")
  if any(not isinstance(s, (int, np.integer)) or s < 1 for s in batch_sizes):
    raise BucketError(f"BucketByLength: batch sizes must be ints >= 1, got {list(batch_sizes)}")


def bucket_by_length(generator: Any, length_fn: Callable[[Any], int], boundaries: Sequence[int],
                     batch_sizes: Sequence[int], strict_pad_on_len: bool = False) -> Stream:
  """Trax's `bucket_by_length`: batches of similar `length_fn(example)`; see `BucketByLength`."""
  _check_buckets(boundaries, batch_sizes)
  name = fmt_args("BucketByLength", boundaries=list(boundaries), batch_sizes=list(batch_sizes),
                  length_fn=length_fn, strict_pad_on_len=strict_pad_on_len)
  return stage(name, lambda: _Buckets(length_fn, boundaries, batch_sizes, strict_pad_on_len))(
      generator)


def BucketByLength(boundaries: Sequence[int], batch_sizes: Sequence[int],  # noqa: N802
                   length_keys: Sequence[int] | None = None, length_axis: int = 0,
                   strict_pad_on_len: bool = False) -> Callable[[Any], Stream]:
  """Batches examples of similar length: an example of length `l` (the longest of its items at
  `length_keys`, default `[0, 1]`, along `length_axis`) joins the first bucket with
  `l <= boundaries[i]` (the last bucket takes the rest); a bucket holding `batch_sizes[i]`
  examples is emitted padded to its boundary (Trax's `pad_to_max_dims`).

  >>> BucketByLength([8, 16], [32, 16, 8])   # batches of 32 x <=8, 16 x <=16, 8 x longer
  """
  _check_buckets(boundaries, batch_sizes)
  keys = list(length_keys or [0, 1])
  name = fmt_args("BucketByLength", boundaries=list(boundaries), batch_sizes=list(batch_sizes),
                  length_keys=keys, length_axis=length_axis, strict_pad_on_len=strict_pad_on_len)
  length_fn = lambda x: _length_fn(x, length_axis, keys)  # noqa: E731
  return stage(name, lambda: _Buckets(length_fn, boundaries, batch_sizes, strict_pad_on_len))
