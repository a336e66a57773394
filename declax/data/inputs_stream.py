"""The machinery under declax's Trax-style stream combinators: grain datasets whose iterators
save everything they hold (shuffle buffers, half-filled buckets, pending outputs) as JSON.

A combinator is a function from an upstream (a `Stream`, a grain `IterDataset`, or any Python
iterable) to a `Stream`. A `Stream` is an iterator with `get_state()`/`set_state()`, the
protocol of `declax.data.Pipeline`, so it can be a `TrainTask`'s or `EvalTask`'s labeled_data.

```python
from declax.data import inputs_stream
s = inputs_stream.map_stage('Double', lambda x: 2 * x)(range(5))
next(s); state = s.get_state(); rest = list(s)
t = inputs_stream.map_stage('Double', lambda x: 2 * x)(range(5)); t.set_state(state)
assert list(t) == rest == [2, 4, 6, 8]
```
"""

from __future__ import annotations

import base64
import collections
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grain
import numpy as np

from declax.errors import DeclaxError

STATE_FORMAT = "declax.data.Stream"
LOOKBACK = 10_000  # items a plain Python iterator keeps, so a position can be re-read (peek)


class PipelineStateError(DeclaxError, ValueError):
  """A saved stream position that does not fit this pipeline, or that cannot be saved."""


# ---------------------------------------------------------------- JSON encoding of examples
def encode_value(x: Any) -> Any:
  """`x` (arrays, numpy scalars, tuples, dicts, bytes, Python scalars) as JSON-able data."""
  if x is None or isinstance(x, (bool, int, float, str)):
    return x
  if isinstance(x, (np.ndarray, np.generic)):
    a = np.asarray(x)
    if a.dtype.hasobject:
      raise PipelineStateError(f"cannot save an object array of shape {a.shape} in a stream "
                               "position; convert it to numbers or strings first")
    kind = "nd" if isinstance(x, np.ndarray) else "np"
    return {"__" + kind: [a.dtype.str, list(a.shape), _b64(a)]}
  if isinstance(x, tuple):
    return {"__tuple": [encode_value(v) for v in x]}
  if isinstance(x, list):
    packed = _pack(x)
    return packed if packed is not None else [encode_value(v) for v in x]
  if isinstance(x, dict):
    if all(isinstance(k, str) and not k.startswith("__") for k in x):
      return {k: encode_value(v) for k, v in x.items()}  # readable JSON for the common case
    return {"__dict": [[encode_value(k), encode_value(v)] for k, v in x.items()]}
  if isinstance(x, bytes):
    return {"__bytes": base64.b64encode(x).decode()}
  raise PipelineStateError(f"cannot save a value of type {type(x).__name__} in a stream position "
                           "(examples must be arrays, numbers, strings, bytes, tuples, lists or "
                           "dicts)")


def _b64(a: np.ndarray) -> str:
  return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def _kind(a: Any) -> tuple:
  return (a.__class__, a.ndim, a.dtype)


def _pack(items: list) -> dict | None:
  """A list of tuples of 1-D arrays (a shuffle queue of tokenized examples) as one buffer per
  tuple position: ~100x faster than one entry per array, and get_state runs every step."""
  if len(items) < 8 or not isinstance(items[0], tuple):
    return None
  width = len(items[0])
  if {(it.__class__, len(it)) for it in items} != {(tuple, width)}:
    return None
  columns = []
  for k in range(width):
    arrays = [it[k] for it in items]
    try:
      kinds = set(map(_kind, arrays))
    except AttributeError:  # not all arrays
      return None
    if len(kinds) != 1:
      return None
    cls, ndim, dtype = kinds.pop()
    if cls is not np.ndarray or ndim != 1 or dtype.hasobject:
      return None
    lengths = np.fromiter(map(len, arrays), np.int64, len(arrays))
    columns.append([dtype.str, _b64(lengths), _b64(np.concatenate(arrays))])
  return {"__packed": [len(items), columns]}


def _unpack(v: list) -> list:
  n, columns = v
  split = []
  for dtype, lengths, data in columns:
    lengths = np.frombuffer(base64.b64decode(lengths), np.int64)
    flat = np.frombuffer(base64.b64decode(data), np.dtype(dtype)).copy()
    split.append(np.split(flat, np.cumsum(lengths)[:-1]) if n else [])
  return [tuple(col[i] for col in split) for i in range(n)]


def decode_value(j: Any) -> Any:
  """The inverse of `encode_value`."""
  if isinstance(j, list):
    return [decode_value(v) for v in j]
  if not isinstance(j, dict):
    return j
  if len(j) != 1 or not next(iter(j)).startswith("__"):
    return {k: decode_value(v) for k, v in j.items()}
  (tag, v), = j.items()
  if tag in ("__nd", "__np"):
    dtype, shape, data = v
    a = np.frombuffer(base64.b64decode(data), np.dtype(dtype)).reshape(shape).copy()
    return a if tag == "__nd" else a[()]
  if tag == "__packed":
    return _unpack(v)
  if tag == "__tuple":
    return tuple(decode_value(x) for x in v)
  if tag == "__dict":
    return {decode_value(k): decode_value(x) for k, x in v}
  if tag == "__bytes":
    return base64.b64decode(v)
  raise PipelineStateError(f"unknown tag {tag!r} in a saved stream position")


# ---------------------------------------------------------------- stages
class StageLogic:
  """One step's own work and memory; `parents` are the upstream grain iterators."""

  def next(self, parents: Sequence[grain.DatasetIterator]) -> Any:
    raise NotImplementedError

  def get_state(self) -> Any:
    return None

  def set_state(self, state: Any) -> None:
    del state


class StageDataset(grain.IterDataset):
  """A grain `IterDataset` that runs a `StageLogic` (made fresh for each iterator)."""

  def __init__(self, parents: Sequence[grain.IterDataset], make_logic: Callable[[], StageLogic],
               name: str):
    super().__init__(list(parents))
    self.stage_parents = list(parents)
    self.make_logic = make_logic
    self.name = name

  def __iter__(self) -> StageIterator:
    return StageIterator([iter(p) for p in self.stage_parents], self.make_logic(), self.name)

  def __str__(self) -> str:
    return describe(self)


class StageIterator(grain.DatasetIterator):
  """Iterates a `StageDataset`; its state nests the parents' states and the stage's own."""

  def __init__(self, parents: list, logic: StageLogic, name: str):
    super().__init__(parents)
    self.stage_parents, self.logic, self.name = parents, logic, name

  def __next__(self) -> Any:
    return self.logic.next(self.stage_parents)

  def get_state(self) -> dict[str, Any]:
    return {"stage": self.name, "parents": [p.get_state() for p in self.stage_parents],
            "own": encode_value(self.logic.get_state())}

  def set_state(self, state: dict[str, Any]) -> None:
    if not isinstance(state, dict) or state.get("stage") != self.name:
      saved = state.get("stage") if isinstance(state, dict) else type(state).__name__
      raise PipelineStateError(f"the saved stream position belongs to step {saved!r}, but "
                               f"this pipeline has {self.name!r} there: it was saved by a "
                               "different pipeline")
    parents = state.get("parents", [])
    if len(parents) != len(self.stage_parents):
      raise PipelineStateError(f"step {self.name!r}: the saved position has {len(parents)} "
                               f"inputs, this pipeline {len(self.stage_parents)}")
    for p, s in zip(self.stage_parents, parents, strict=True):
      p.set_state(s)
    self.logic.set_state(decode_value(state.get("own")))


def describe(ds: Any) -> str:
  """A one-line description of a pipeline: its steps in order (`A(..) | B(..)`)."""
  if isinstance(ds, StageDataset):
    ups = [describe(p) for p in ds.stage_parents]
    if not ups:
      return ds.name
    head = ups[0] if len(ups) == 1 else "[" + "; ".join(ups) + "]"
    return f"{head} | {ds.name}"
  return type(ds).__name__


# ---------------------------------------------------------------- plain Python iterators
class PythonIterator(StageLogic):
  """Reads a Python iterator; its position is how many items were read, restored by reading
  (skipping) as many from a fresh iterator: exact when the iterator is deterministic."""

  def __init__(self, make_iterator: Callable[[], Iterable], restartable: bool = False):
    self._make, self._it, self.restartable = make_iterator, None, restartable
    self.count = self._read = 0
    self._lookback: collections.deque = collections.deque(maxlen=LOOKBACK)

  def _pull(self) -> Any:
    if self._it is None:
      self._it = iter(self._make())
    item = next(self._it)
    self._read += 1
    self._lookback.append(item)
    return item

  def next(self, parents):
    if self.count < self._read:  # re-reading after set_state moved back
      item = self._lookback[len(self._lookback) - (self._read - self.count)]
    else:
      item = self._pull()
    self.count += 1
    return item

  def get_state(self):
    return {"count": self.count}

  def set_state(self, state):
    target = int(state["count"])
    if self._read - target > len(self._lookback) and self.restartable:  # a list: read it again
      self._it, self._read = None, 0
      self._lookback.clear()
    if self._read - target > len(self._lookback):
      raise PipelineStateError(
          f"cannot move a plain Python iterator back from item {self._read} to {target} (it "
          f"keeps the last {LOOKBACK}); build a fresh pipeline and restore the position there")
    try:
      while self._read < target:
        self._pull()
    except StopIteration:
      raise PipelineStateError(
          f"a Python iterator in the pipeline ended after {self._read} items while restoring "
          f"position {target}: it does not yield the same data as when the state was saved"
      ) from None
    self.count = target


def python_dataset(iterable: Iterable, name: str = "python") -> StageDataset:
  """A `StageDataset` reading a Python iterable (a list is re-read from its start on restore)."""
  if isinstance(iterable, (list, tuple, range)):
    return StageDataset([], lambda: PythonIterator(lambda: iterable, restartable=True),
                        f"{name}[{len(iterable)}]")
  it = iter(iterable)
  return StageDataset([], lambda: PythonIterator(lambda: it), name)


class Stream:
  """An iterator over a pipeline whose position can be saved: `get_state()` is JSON, and
  `set_state()` on a freshly built identical pipeline resumes exactly (buffers included).

  The same protocol as `declax.data.Pipeline`, so a `Stream` can be a `TrainTask`'s data.
  """

  def __init__(self, dataset: grain.IterDataset):
    self.dataset = dataset
    self._iterator: grain.DatasetIterator | None = None

  @property
  def started(self) -> bool:
    return self._iterator is not None

  def _it(self) -> grain.DatasetIterator:
    if self._iterator is None:
      self._iterator = iter(self.dataset)
    return self._iterator

  def __iter__(self) -> Stream:
    return self

  def __next__(self) -> Any:
    return next(self._it())

  def get_state(self) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "version": 1, "pipeline": describe(self.dataset),
            "grain": self._it().get_state()}

  def set_state(self, state: dict[str, Any]) -> None:
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
      raise PipelineStateError(f"not a declax.data stream position: {str(state)[:200]}")
    here = describe(self.dataset)
    if state.get("pipeline") != here:
      raise PipelineStateError(
          "the stream position was saved by a different pipeline;\n  saved: "
          f"{state.get('pipeline')}\n  this:  {here}\nbuild the same pipeline (same steps and "
          "arguments) to resume, or start this one from its beginning")
    self._it().set_state(state["grain"])

  def __repr__(self) -> str:
    return f"Stream({describe(self.dataset)})"


def as_dataset(upstream: Any, step: str) -> grain.IterDataset:
  """The grain dataset to build step `step` on."""
  if upstream is None:
    raise TypeError(f"{step} needs an input stream, got None: put a source first, e.g. "
                    "Serial(TFDS('name', keys=...), ...) or Serial(lambda _: my_generator(), ...)")
  if isinstance(upstream, Stream) and not upstream.started:
    return upstream.dataset
  if isinstance(upstream, grain.IterDataset):
    return upstream
  if isinstance(upstream, grain.MapDataset):
    return upstream.to_iter_dataset()
  if isinstance(upstream, (str, bytes)) or not isinstance(upstream, Iterable):
    raise TypeError(f"{step} takes a stream (an iterable of examples), got "
                    f"{type(upstream).__name__}")
  return python_dataset(upstream)


def to_stream(x: Any) -> Stream:
  """`x` as a `Stream` (Python iterators are wrapped)."""
  return x if isinstance(x, Stream) else Stream(as_dataset(x, "Serial"))


def stage(name: str, make_logic: Callable[[], StageLogic]) -> Callable[[Any], Stream]:
  """A combinator: upstream -> `Stream` running a fresh `make_logic()` over it."""
  def apply(upstream: Any) -> Stream:
    return Stream(StageDataset([as_dataset(upstream, name)], make_logic, name))

  apply.__name__ = apply.__qualname__ = name.split("(")[0]
  return apply


class FlatMap(StageLogic):
  """Each input example becomes zero or more outputs (`fn(example) -> list`); outputs not yet
  handed out are part of the state."""

  def __init__(self, fn: Callable[[Any], list]):
    self.fn, self.pending = fn, collections.deque()

  def next(self, parents):
    while not self.pending:
      self.pending.extend(self.fn(next(parents[0])))
    return self.pending.popleft()

  def get_state(self):
    return list(self.pending)

  def set_state(self, state):
    self.pending = collections.deque(state or [])


def flat_map_stage(name: str, fn: Callable[[Any], list]) -> Callable[[Any], Stream]:
  return stage(name, lambda: FlatMap(fn))


def map_stage(name: str, fn: Callable[[Any], Any]) -> Callable[[Any], Stream]:
  return stage(name, lambda: FlatMap(lambda x: [fn(x)]))


def filter_stage(name: str, keep: Callable[[Any], bool]) -> Callable[[Any], Stream]:
  return stage(name, lambda: FlatMap(lambda x: [x] if keep(x) else []))


def _arg_repr(v: Any) -> str:
  if callable(v) and not isinstance(v, type):  # no memory addresses: they change every run
    return getattr(v, "__qualname__", type(v).__name__)
  if isinstance(v, np.ndarray):
    return f"array{list(v.shape)}"
  if isinstance(v, type):
    return v.__name__
  return repr(v)


def fmt_args(name: str, /, **kwargs: Any) -> str:
  """`'Name(a=1, b=2)'`: a step's name in pipeline descriptions and saved positions."""
  return f"{name}({', '.join(f'{k}={_arg_repr(v)}' for k, v in kwargs.items())})"
