"""Labels and token ids checked against the model's classes and vocabulary inside the jitted step.

A label >= n_classes one-hot encodes to zeros and a token id >= vocab_size reads the embedding's
last row (Trax's `'clip'`): the run trains on garbage, often until the loss turns NaN. The first
batch is checked when the `Loop` is built (`guards.check_labels`); every batch is checked in the
jitted train and eval steps: the largest integer target against the model output's last axis
(`class_limit`), the smallest and largest id each `Embedding` reads against its `vocab_size`.
The first violation rides in the metrics the step already returns (`IdCheck`: four scalars, no
transfer of its own), and the `Loop` raises `IdRangeError` naming the step when it fetches them
(at a log step, before a checkpoint), as it does for a NaN loss.

```python
checks = IdChecks()
with checks.embeddings():                  # every Embedding's ids, recorded while tracing
  stack, _ = run_model(model, variables, batch)
checks.labels(stack[0], batch, model.n_in)
found = checks.first(step)                 # IdCheck; found.step is -1 when all is in range
```
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct
from flax.core.tracers import current_trace

from declax.training.config_schema import ConfigError

__all__ = ["IdCheck", "IdChecks", "IdRangeError", "Site", "class_limit"]


def class_limit(output: Any, targets: Any) -> int | None:
  """The number of class ids the integer `targets` may take for a model `output` of one more
  axis: its last axis, or 2 for a single output (a binary classifier: 0/1). None when the
  targets are not class ids of this output (floats, soft targets, other shapes)."""
  if (not jnp.issubdtype(targets.dtype, jnp.integer)
      or not jnp.issubdtype(output.dtype, jnp.inexact)
      or len(output.shape) != len(targets.shape) + 1 or not output.shape[-1]):
    return None
  return max(int(output.shape[-1]), 2)


@dataclasses.dataclass(frozen=True)
class Site:
  """What one check looks at, for the message: `item` ("targets (batch item 1)", "inputs (token
  ids read by Embedding_10_4)"), `owner` ("the model's 3 classes (outputs float32[8, 3])"),
  `kind` ('labels' or 'token ids') and `key`, the config key that sets the limit."""

  item: str
  owner: str
  kind: str
  key: str


@struct.dataclass
class IdCheck:
  """The first out-of-range id of the steps seen: `step` (-1: none), `check` (the index of its
  `Site`), the offending `value` and the `limit` (ids must be in `[0, limit)`)."""

  step: jax.Array
  check: jax.Array
  value: jax.Array
  limit: jax.Array

  @classmethod
  def none(cls) -> IdCheck:
    zero = lambda: jnp.zeros((), jnp.int32)  # noqa: E731 - distinct buffers (the Loop donates)
    return cls(jnp.full((), -1, jnp.int32), zero(), zero(), zero())

  def then(self, later: IdCheck) -> IdCheck:
    """This check and a `later` one as one: the earlier violation is kept."""
    keep = self.step >= 0
    return jax.tree.map(lambda a, b: jnp.where(keep, a, b), self, later)


class IdChecks:
  """The id checks of one step function. `sites[i]` describes check `i`; they are recorded when
  the step is traced (the same ones at every trace)."""

  def __init__(self):
    self.sites: list[Site] = []
    self._found: list[tuple[jax.Array, jax.Array, int]] = []

  def _add(self, site: Site, bad: jax.Array, value: jax.Array, limit: int) -> None:
    if len(self._found) < len(self.sites):
      self.sites[len(self._found)] = site
    else:
      self.sites.append(site)
    self._found.append((bad, value.astype(jnp.int32), limit))

  def labels(self, output: Any, batch: Sequence[Any], n_in: int) -> None:
    """Checks the targets (`batch[n_in]`) against the classes of the model's `output`."""
    if len(batch) <= n_in:
      return
    targets = batch[n_in]
    limit = class_limit(output, targets)
    if limit is None or not targets.size:
      return
    shape = f"{jnp.dtype(output.dtype).name}{list(output.shape)}"
    owner = (f"the model's {limit} classes (outputs {shape})" if output.shape[-1] > 1 else
             f"the model's single output, a binary classifier (outputs {shape})")
    high = jnp.max(targets)  # (negative labels may be a dataset's "ignore" marker: left alone)
    self._add(Site(f"targets (batch item {n_in})", owner, "labels",
                   "config.model.n_classes / vocab_size"), high >= limit, high, limit)

  @contextlib.contextmanager
  def embeddings(self) -> Iterator[None]:
    """Records the ids every `Embedding` reads in the `with` block; it starts the checks of one
    trace, so enter it first, inside the traced function. Embeddings under a nested transform
    (`nn.scan`, `nn.remat`) are not checked: their ids belong to another trace."""
    from declax.layers.core import Embedding

    outer = current_trace()

    def intercept(next_fun, args, kwargs, context):
      module = context.module
      if (context.method_name == "forward" and isinstance(module, Embedding) and args
          and current_trace() == outer):
        ids = args[0]
        dtype = getattr(ids, "dtype", None)  # (a bad input is the layer's own error to give)
        if dtype is not None and jnp.issubdtype(dtype, jnp.integer) and ids.size:
          low, high = jnp.min(ids), jnp.max(ids)
          over = high >= module.vocab_size
          site = Site(f"inputs (token ids read by {module.label})",
                      f"its vocabulary of {module.vocab_size}", "token ids",
                      "config.model.vocab_size")
          self._add(site, over | (low < 0), jnp.where(over, high, low), module.vocab_size)
      return next_fun(*args, **kwargs)

    self._found = []
    with nn.intercept_methods(intercept):
      yield

  def first(self, step: jax.Array) -> IdCheck:
    """The first failed check (in recording order) as an `IdCheck` at `step`; resets."""
    found, self._found = self._found, []
    result = IdCheck.none()
    for index in reversed(range(len(found))):
      bad, value, limit = found[index]
      result = jax.tree.map(lambda new, old, b=bad: jnp.where(b, new, old),
                            IdCheck(jnp.asarray(step, jnp.int32), jnp.int32(index), value,
                                    jnp.int32(limit)), result)
    return result


class IdRangeError(ConfigError):
  """A batch holds a label or token id outside the model's classes or vocabulary.

  `step` is the training step (or eval batch) that held it; nothing from that step on was saved:
  `last_checkpoint` (or None) is the newest good checkpoint.
  """

  def __init__(self, stage: str, at: str, site: Site, value: int, limit: int,
               last_checkpoint: int | None = None, directory: str | None = None):
    self.stage, self.at, self.site, self.value, self.limit = stage, at, site, value, limit
    self.last_checkpoint, self.directory = last_checkpoint, directory
    if value < 0:
      fix = f"check the data's {site.kind} (negative ids are never valid)"
    else:
      fix = f"set {site.key} to at least {value + 1}, or check the data's {site.kind}"
    where = ""
    if stage == "training":
      where = (f" Stopped; nothing from {at} on was saved"
               + (f"; the last good checkpoint is step {last_checkpoint} in {directory}"
                  if last_checkpoint is not None else ""))
    super().__init__(f"the {stage} data's {site.item} hold {value} at {at}, outside "
                     f"{site.owner}; {site.kind} must be in [0, {limit}): {fix}.{where}")

  def __reduce__(self):
    return (type(self), (self.stage, self.at, self.site, self.value, self.limit,
                         self.last_checkpoint, self.directory))

  def with_checkpoint(self, last_checkpoint: int | None, directory: str | None) -> IdRangeError:
    return IdRangeError(self.stage, self.at, self.site, self.value, self.limit, last_checkpoint,
                        directory)
