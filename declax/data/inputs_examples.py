"""Trax's per-example stream steps: filters, truncation, padding, loss weights, casts, logging.

Each returns a function from a stream to a checkpointable `Stream` (see `declax.data.inputs`).

```python
import numpy as np
from declax import data
step = data.AddLossWeights(id_to_mask=0)
inputs, targets, weights = next(step([(np.array([5, 6, 0]), np.array([6, 7, 0]))]))
assert weights.tolist() == [1.0, 1.0, 0.0]
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from declax.data.inputs_stream import (
    StageLogic,
    Stream,
    filter_stage,
    fmt_args,
    map_stage,
    stage,
)


def _length_fn(example: Any, length_axis: int, length_keys: Sequence[int]) -> int:
  if isinstance(example, (list, tuple, dict)):  # dicts: length_keys are feature names
    return max(np.shape(example[i])[length_axis] for i in length_keys)
  return np.shape(example)[length_axis]


def FilterEmptyExamples(axes: Sequence[int] | None = None, debug: bool = False):  # noqa: N802
  """Drops examples with an item of shape `(0,)` (among `axes`, default all)."""
  def keep(example):
    empty = any(np.shape(x) == (0,) for i, x in enumerate(example) if axes is None or i in axes)
    if empty and debug:
      logging.info("Filtered example: %r", example)
    return not empty

  return filter_stage(fmt_args("FilterEmptyExamples", axes=axes), keep)


def FilterByLength(max_length: int | None, min_length: int | None = 0,  # noqa: N802
                   length_keys: Sequence[int] | None = None, length_axis: int = 0):
  """Keeps examples with `min_length <= length <= max_length` (length as in `BucketByLength`)."""
  if max_length is None and min_length is None:
    raise ValueError("FilterByLength needs max_length or min_length")
  keys = list(length_keys or [0, 1])

  def keep(example):
    n = _length_fn(example, length_axis, keys)
    return (max_length is None or n <= max_length) and (min_length is None or n >= min_length)

  return filter_stage(fmt_args("FilterByLength", max_length=max_length, min_length=min_length,
                               length_keys=keys, length_axis=length_axis), keep)


def _as_tuple(example: Any, step: str) -> list:
  if isinstance(example, np.ndarray):
    return [example]
  if isinstance(example, (list, tuple)):
    return list(example)
  raise ValueError(f"{step}: unknown example type {type(example).__name__}: {example!r}")


def TruncateToLength(len_map: dict[int, tuple] | None = None):  # noqa: N802
  """Cuts items to the shapes in `len_map` (`{0: (256,), 1: (256,)}`) with `np.resize`, as
  Trax does (a shape that sorts below the item's is applied even if it adds values)."""
  def truncate(example):
    example = _as_tuple(example, "TruncateToLength")
    for key, max_len in (len_map or {}).items():
      if tuple(np.shape(example[key])) > tuple(max_len):
        example[key] = np.resize(example[key], max_len)
    return tuple(example)

  return map_stage(fmt_args("TruncateToLength", len_map=len_map), truncate)


def PadToLength(len_map: dict[int, int] | None = None, pad_value: Any = 0,  # noqa: N802
                multiple: bool = False):
  """Pads items (axis 0) to the lengths in `len_map` (to a multiple of them with `multiple`);
  `pad_value` is one value or a dict by item. (Trax's `multiple` rounding is off for lengths
  between multiples; declax pads to the next multiple.)"""
  if len_map is None:
    raise ValueError("len_map parameter should be provided.")

  def pad_one(x, key):
    x = np.asarray(x)
    n = len_map[key]
    length = -(-x.shape[0] // n) * n if multiple else max(n, x.shape[0])
    value = pad_value[key] if isinstance(pad_value, dict) else pad_value
    return np.pad(x, [(0, length - x.shape[0])] + [(0, 0)] * (x.ndim - 1), constant_values=value)

  def pad(example):
    if isinstance(example, (list, tuple)):
      example = list(example)
      for key in len_map:
        example[key] = pad_one(example[key], key)
      return tuple(example)
    if not isinstance(example, np.ndarray):
      raise ValueError(f"example isn't nparray, but should be: {example}")
    return pad_one(example, 0)

  return map_stage(fmt_args("PadToLength", len_map=len_map, pad_value=pad_value,
                            multiple=multiple), pad)


def _append(x: Any, value: Any, axis: int | None) -> np.ndarray:
  value = np.asarray(value)
  if isinstance(x, np.ndarray) and np.can_cast(value.dtype, x.dtype, "same_kind"):
    value = value.astype(x.dtype)  # int32 ids stay int32 (NumPy alone would give int64)
  return np.append(x, value, axis)


def AppendValue(val: dict[int, Any] | None = None):  # noqa: N802
  """Appends `val[i]` to item `i` along the last axis (e.g. an EOS id: `{0: [1], 1: [1]}`),
  keeping the item's dtype when the value fits it (`int32` ids stay `int32`)."""
  def append(example):
    if isinstance(example, tuple):
      example = list(example)
      for key, value in (val or {}).items():
        example[key] = _append(example[key], value, -1)
      return tuple(example)
    if not isinstance(example, np.ndarray):
      raise ValueError(f"example isn't nparray, but should be: {example}")
    return _append(example, val[0], None)

  return map_stage(fmt_args("AppendValue", val=val), append)


def _add_loss_weights(example: Any, id_to_mask: int | None) -> Any:
  if len(example) > 3 or len(example) < 2:
    if id_to_mask is not None:
      raise ValueError(f"AddLossWeights: cannot mask id {id_to_mask} in examples of "
                       f"{len(example)} items (it needs (inputs, targets[, weights]))")
    return example
  if len(example) == 2:
    weights = np.ones_like(example[1], np.float32)
  else:
    weights = np.asarray(example[2], np.float32)
  weights = weights * (1.0 - np.equal(example[1], id_to_mask).astype(np.float32))
  return (example[0], example[1], weights)


def AddLossWeights(id_to_mask: int | None = None):  # noqa: N802
  """`(inputs, targets) -> (inputs, targets, weights)`: weights are 1, and 0 where targets
  equal `id_to_mask` (padding); existing weights are multiplied by that mask."""
  return map_stage(fmt_args("AddLossWeights", id_to_mask=id_to_mask),
                   lambda x: _add_loss_weights(x, id_to_mask))


def add_loss_weights(generator: Any, id_to_mask: int | None = None) -> Stream:
  """Trax's `add_loss_weights(generator, id_to_mask)`."""
  return AddLossWeights(id_to_mask)(generator)


def CastTo(dtype: Any = np.int32, indices: Sequence[int] = (0, 1), debug: bool = False):  # noqa: N802
  """Casts items at `indices` to `dtype`."""
  def cast(example):
    if not isinstance(example, tuple):
      raise ValueError(f"CastTo takes tuples, got {type(example).__name__}")
    return tuple(np.asarray(x).astype(dtype) if i in indices else x
                 for i, x in enumerate(example))

  del debug
  return map_stage(fmt_args("CastTo", dtype=np.dtype(dtype).name, indices=tuple(indices)), cast)


data_counters: dict[str, int] = {}  # Trax's global counters of CountAndSkip


class _CountAndSkip(StageLogic):
  def __init__(self, name: str):
    self.name, self.local = name, 0

  def next(self, parents):
    while True:
      example = next(parents[0])
      self.local += 1
      data_counters.setdefault(self.name, 0)
      if self.local > data_counters[self.name]:
        data_counters[self.name] += 1
        return example

  def get_state(self):
    return self.local

  def set_state(self, state):
    self.local = int(state)


def CountAndSkip(name: str):  # noqa: N802
  """Trax's `CountAndSkip`: counts examples in `data_counters[name]` and, in a new stream,
  skips as many. (declax streams resume by `get_state`/`set_state`; this is for Trax code.)"""
  return stage(fmt_args("CountAndSkip", name=name), lambda: _CountAndSkip(name))


def count_and_skip(generator: Any, name: str) -> Stream:
  """Trax's `count_and_skip(generator, name)`."""
  return CountAndSkip(name)(generator)


class _Log(StageLogic):
  def __init__(self, n_steps_per_example: int, only_shapes: bool):
    self.every, self.only_shapes, self.counter = n_steps_per_example, only_shapes, 0

  def next(self, parents):
    example = next(parents[0])
    if self.counter % self.every == 0:
      item = example
      if self.only_shapes:
        item = _shapes(example)
      logging.info(str(item))
      print(item)
    self.counter += 1
    return example

  def get_state(self):
    return self.counter

  def set_state(self, state):
    self.counter = int(state)


def _shapes(x: Any) -> Any:
  if isinstance(x, (tuple, list)):
    return type(x)(_shapes(v) for v in x)
  if isinstance(x, dict):
    return {k: _shapes(v) for k, v in x.items()}
  a = np.asarray(x)
  return f"{a.dtype}{list(a.shape)}" if a.dtype != object else type(x).__name__


def Log(n_steps_per_example: int = 1, only_shapes: bool = True):  # noqa: N802
  """Logs (and prints) every `n_steps_per_example`-th example, or its shapes."""
  return stage(fmt_args("Log", n_steps_per_example=n_steps_per_example,
                        only_shapes=only_shapes), lambda: _Log(n_steps_per_example, only_shapes))

