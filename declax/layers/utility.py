"""Trax's utility layers: learned `Weights`, `RandomUniform` values, TensorBoard summaries
(`SummaryScalar`, `SummaryImage`), `PrintShape`, `FlattenList` and `Cache`.

Summaries live in the `'summaries'` collection under Trax's keys (`summary_<name>`); run the
model with `mutable=['summaries']` to read them.

```python
layer = tl.SummaryScalar('loss')
y, state = layer.apply({}, x, mutable=['summaries'])   # state['summaries']['summary_loss']
```
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.layers.base import Layer
from declax.layers.control_flow import SameArityAsLayer

SUMMARIES = "summaries"


def _initialize(initializer: Callable, key: jax.Array, shape: tuple) -> jax.Array:
  """Calls a Trax-style `init(shape, rng)` or a Flax-style `init(key, shape, dtype)`."""
  try:
    names = list(inspect.signature(initializer).parameters)
  except (TypeError, ValueError):
    names = []
  if names and names[0] == "shape":
    return jnp.asarray(initializer(shape, key))
  return jnp.asarray(initializer(key, shape, jnp.float32))


class Weights(Layer):
  """Learnable weights as a layer: takes nothing (`n_in == 0`), returns the weights.

  `initializer` is a Flax initializer `(key, shape, dtype)` or a Trax one `(shape, rng)`.

  ```python
  layer = tl.Weights(nn.initializers.normal(), shape=(2, 3))
  w = layer.apply(layer.init(key, ()), ())   # the (2, 3) parameter 'weights'
  ```
  """

  initializer: Callable = nn.initializers.zeros
  shape: Sequence[int] = ()
  use_bfloat16: bool = False

  n_in = 0

  @property
  def default_label(self) -> str:
    return f"Weights_{tuple(self.shape)}"

  @nn.compact
  def forward(self):
    weights = self.param("weights", lambda key: _initialize(self.initializer, key,
                                                          tuple(self.shape)))
    return weights.astype(jnp.bfloat16) if self.use_bfloat16 else weights


class RandomUniform(Layer):
  """Takes nothing, returns uniform random values in `[min_val, max_val)` of `shape`.

  Draws from the `'random'` PRNG stream, or `'dropout'` when no `'random'` stream is given.

  ```python
  tl.RandomUniform(1.0, 2.0, shape=(3,)).apply({}, (), rngs={'random': key})
  ```
  """

  min_val: float = 0.0
  max_val: float = 1.0
  shape: Sequence[int] = ()
  dtype: Any = jnp.float32
  sync: bool = False

  n_in = 0

  def forward(self):
    stream = "random" if self.has_rng("random") or not self.has_rng("dropout") else "dropout"
    return jax.random.uniform(self.make_rng(stream), tuple(self.shape), self.dtype,
                              self.min_val, self.max_val)


class SummaryScalar(Layer):
  """The identity that records `aggregation_fun(x)` (default mean) as `summary_<name>`.

  ```python
  y, state = tl.SummaryScalar('act').apply({}, x, mutable=['summaries'])
  ```
  """

  summary_name: str = "scalar"  # Trax's `name`, its first argument (`name=` is Linen's)
  aggregation_fun: Callable = jnp.mean

  @property
  def default_label(self) -> str:
    return f"Summary_{self.summary_name}"

  @nn.compact
  def forward(self, x):
    key = f"summary_{self.summary_name}"
    value = jnp.asarray(self.aggregation_fun(x), jnp.float32)
    summary = self.variable(SUMMARIES, key, lambda: jnp.zeros((), jnp.float32))
    if self.is_mutable_collection(SUMMARIES) and not self.is_initializing():
      summary.value = value
    return x


class SummaryImage(Layer):
  """The identity on `n_in` items that records the first `num_summaries` examples as images
  `summary_<name><i>` (the items of example `i` concatenated along axis 0, each passed through
  `recover_fn` first when given).

  ```python
  y, state = tl.SummaryImage('frames', n_in=1).apply({}, images, mutable=['summaries'])
  ```
  """

  summary_name: str = "image"  # Trax's `name`, its first argument (`name=` is Linen's)
  n_in: int = 1
  num_summaries: int = 5
  recover_fn: Callable | None = None

  @property
  def n_out(self) -> int:
    return self.n_in

  @property
  def default_label(self) -> str:
    return f"Summary_{self.summary_name}"

  @nn.compact
  def forward(self, *xs):
    record = self.is_mutable_collection(SUMMARIES) and not self.is_initializing()
    for s in range(min(self.num_summaries, xs[0].shape[0])):
      parts = [self.recover_fn(x[s]) if self.recover_fn else x[s] for x in xs]
      image = jnp.concatenate(parts, axis=0)
      summary = self.variable(SUMMARIES, f"summary_{self.summary_name}{s}",
                              lambda image=image: jnp.zeros_like(image))
      if record:
        summary.value = image
    return xs


class PrintShape(Layer):
  """The identity on `n_in` items that prints (and logs) their shapes and dtypes, e.g.
  `PrintShape: msg: [(2, 3)[float32]]`. Prints at trace time, once per compilation.

  ```python
  tl.Serial(tl.Dense(4), tl.PrintShape(msg='after dense'))
  ```
  """

  n_in: int = 1
  msg: str = ""

  @property
  def n_out(self) -> int:
    return self.n_in

  @property
  def default_label(self) -> str:
    return f"PrintShape_{self.n_in}"

  def forward(self, *xs):
    shapes = ", ".join(f"{tuple(x.shape)}[{x.dtype}]" for x in xs)
    info = f"PrintShape: {self.msg}: [{shapes}]"
    print(info)
    logging.info(info)
    return xs


def _deep_flatten(items: Any) -> list:
  if isinstance(items, (list, tuple)):
    return [leaf for item in items for leaf in _deep_flatten(item)]
  return [items]


class FlattenList(Layer):
  """Flattens nested lists/tuples of arrays into one flat tuple (Trax's `FlattenList`).

  Unlike Trax, which declares one output whatever it returns, `n_in` (top-level items, each an
  array or a nested tuple) and `n_out` are given explicitly (default 1 and 1): declax checks
  every layer's outputs against its `n_out`.

  ```python
  tl.FlattenList(n_in=2, n_out=3).apply({}, (a, (b, c)))   # (a, b, c)
  ```
  """

  n_in: int = 1
  n_out: int = 1

  def forward(self, *xs):
    return tuple(_deep_flatten(xs))


class Cache(SameArityAsLayer):
  """Runs `layer` once and returns its first outputs on every later call.

  The outputs are kept in the `'cache'` collection (`outputs`, and `filled`); apply with
  `mutable=['cache']` and pass the updated cache back to reuse them.

  ```python
  layer = tl.Cache(tl.Dense(4))
  variables = layer.init(key, x)
  y1, cache = layer.apply(variables, x, mutable=['cache'])
  y2 = layer.apply({**variables, **cache}, other_x)   # == y1
  ```
  """

  layer: Layer | None = None

  @nn.compact
  def forward(self, *xs):
    result = self.call_child(self.layer, xs)
    filled = self.variable("cache", "filled", lambda: jnp.zeros((), jnp.bool_))
    stored = self.variable("cache", "outputs", lambda: jax.tree.map(jnp.zeros_like, result))
    if self.is_initializing():
      return result
    if isinstance(filled.value, jax.core.Tracer):
      outputs = jax.tree.map(lambda old, new: jnp.where(filled.value, old, new), stored.value,
                             result)
    else:
      outputs = stored.value if bool(filled.value) else result
    if self.is_mutable_collection("cache"):
      stored.value, filled.value = outputs, jnp.ones((), jnp.bool_)
    return outputs
