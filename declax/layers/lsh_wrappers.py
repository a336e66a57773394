"""Trax's `PureLSHSelfAttentionWrapper` (projections around a weightless LSH attention) and
`MixedLSHSelfAttention` (LSH attention that falls back to standard attention on short inputs).

The wrapper is `x -> y` (`(x, mask) -> y` when `masked`) on `(batch, length, d_model)` with
`d_model = n_heads * d_qk`: Dense projections to shared queries/keys and values, split into heads,
the pure attention (`pure_lsh_implementation`, `PureLSHSelfAttention` by default), heads merged
and an output Dense. `MixedLSHSelfAttention` is a pure attention `(qk, v[, mask]) -> o` on
`(batch * n_heads, length, d_head)` like `PureLSHSelfAttention`.

```python
layer = tl.PureLSHSelfAttentionWrapper(n_heads=2, d_qk=8, d_v=8, causal=True, chunk_len=8,
                                       n_hashes=2, n_buckets=4, num_weights=2)
y = layer.apply(layer.init(key, x), x)          # x: (batch, 32, 16)
```
"""

from __future__ import annotations

import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from declax.errors import DeclaxError, did_you_mean
from declax.layers.attention_extra import (
  DotProductCausalAttention,
  MergeHeads,
  SplitIntoHeads,
  per_head_attention,
)
from declax.layers.base import Layer
from declax.layers.combinators import Branch, Fn, Parallel, Serial
from declax.layers.core import Dense
from declax.layers.lsh_attention import PureLSHSelfAttention
from declax.layers.position_encodings import _position_cache

__all__ = ["LSHWrapperError", "MixedLSHSelfAttention", "PureLSHSelfAttentionWrapper"]

WEIGHTS_FORMATS = ("model", "sparse", "heads")


class LSHWrapperError(DeclaxError, ValueError):
  """A `PureLSHSelfAttentionWrapper`/`MixedLSHSelfAttention` argument or input that cannot work."""


# ------------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------------


def _rotate_from(x: jax.Array, start: jax.Array | int) -> jax.Array:
  """`declax.layers.rotate` for positions `start, start + 1, ...` (Trax's formula)."""
  _, length, d = x.shape
  inv_freq = jnp.exp(jnp.arange(0, d, 2, dtype=jnp.float32) * -(math.log(10000.0) / d))
  positions = (start + jnp.arange(length, dtype=jnp.int32)).astype(jnp.float32)
  freqs = positions[:, None] * inv_freq[None, :]
  emb = jnp.concatenate((freqs, freqs), axis=-1)[None]
  x1, x2 = x[..., : d // 2], x[..., d // 2:]
  rotated = jnp.concatenate((-x2, x1), axis=-1)
  return (x * jnp.cos(emb) + rotated * jnp.sin(emb)).astype(x.dtype)


class _Rotate(Layer):
  """Trax's `Rotate`; in `'predict'` mode it counts the positions already decoded (in the
  `'cache'` collection), so token-by-token decoding rotates like the full pass."""

  mode: str = "train"

  @property
  def default_label(self) -> str:
    return "Rotate"

  @nn.compact
  def forward(self, x):
    start = _position_cache(self, x.shape[1]) if self.mode == "predict" else 0
    return _rotate_from(x, start)


class _CheckWidth(Layer):
  """Passes `x` through after checking that its width is the wrapper's `n_heads * d_qk`."""

  d_model: int = 1
  owner: str = ""

  @property
  def default_label(self) -> str:
    return "CheckWidth"

  def contract(self, x):
    chex.assert_rank(x, 3, exception_type=LSHWrapperError, custom_message=(
        f"{self.owner}: x must be (batch, length, d_model)"))
    if x.shape[-1] != self.d_model:
      raise LSHWrapperError(
          f"{self.owner}: inputs have {x.shape[-1]} features, but the wrapper projects to "
          f"d_model = n_heads * d_qk = {self.d_model}; choose n_heads and d_qk whose product "
          "is the input width (in ReformerLM: n_heads * d_attention_key == d_model)")

  def forward(self, x):
    return x


def _qk_avg() -> Fn:
  return Fn("QKAvg", lambda q, k: (q + k) / 2.0)


def _project_and_split_heads(d_model: int, n_heads: int, bias: bool, num_weights: int,
                             rotary: bool, mode: str, dtype: Any = None) -> Layer:
  """Trax's `_ProjectAndSplitHeads` for `weights_format='model'`: `x -> (qk, v)`, each
  `(batch * n_heads, length, d_model / n_heads)`."""
  def dense():
    return Dense(d_model, use_bias=bias, dtype=dtype)

  if num_weights == 3:  # separate q and k (e.g. from a CausalAttention checkpoint), averaged
    return Serial(
        Branch(dense(), dense(), dense()),                                # q k v
        Parallel(_Rotate(mode=mode), _Rotate(mode=mode), None) if rotary else [],
        _qk_avg(),                                                        # qk v
        Parallel(SplitIntoHeads(n_heads), SplitIntoHeads(n_heads)),
    )
  return Branch([dense(), _Rotate(mode=mode) if rotary else [], SplitIntoHeads(n_heads)],
                [dense(), SplitIntoHeads(n_heads)])


def _implementation(value: Any) -> Any:
  if not isinstance(value, str):
    return value
  import declax.layers as tl  # here: declax.layers imports this module

  names = ["PureLSHSelfAttention", "MixedLSHSelfAttention"]
  if value not in names:
    raise LSHWrapperError(f"PureLSHSelfAttentionWrapper: unknown pure_lsh_implementation "
                          f"{value!r}; use one of {names}{did_you_mean(value, names)}")
  return getattr(tl, value)


# ------------------------------------------------------------------------------------------------
# PureLSHSelfAttentionWrapper
# ------------------------------------------------------------------------------------------------


def PureLSHSelfAttentionWrapper(n_heads: int = 1, d_qk: int = 64, d_v: int = 64,  # noqa: N802
                                causal: bool = False, masked: bool = False,
                                output_dropout: float = 0.0, attention_dropout: float = 0.0,
                                pure_lsh_implementation: Any = None, bias: bool = True,
                                mode: str = "train", num_weights: int = 3, sparsity: int = 16,
                                weights_format: str = "model", rotary_position_emb: bool = False,
                                **pure_lsh_implementation_kwargs) -> Serial:
  """Trax's `PureLSHSelfAttentionWrapper`: `x -> y` (`(x, mask) -> y` when `masked`; `mask
  (batch, length)` True on real tokens) on `(batch, length, n_heads * d_qk)`.

  **Arguments (Trax's):** `num_weights` 2 (Dense projections to `qk` and `v`) or 3 (`q`, `k`,
  `v`, with `q` and `k` averaged into `qk`), each `(d_model, d_model)` with `d_model = n_heads *
  d_qk`, plus the output Dense; `bias`; `rotary_position_emb` rotates the queries/keys (declax
  also counts positions in `'predict'` mode); `pure_lsh_implementation` (a class or its name:
  `PureLSHSelfAttention`, the default, or `MixedLSHSelfAttention`) gets `n_heads`, `d_qk`, `d_v`,
  `causal`, `masked`, `mode`, the dropouts and `**pure_lsh_implementation_kwargs` (`chunk_len`,
  `n_hashes`, `n_buckets`, `predict_mem_len`, ...). `weights_format` must be `'model'`;
  `sparsity` is accepted for Trax and unused. A `dtype` keyword (declax's) also sets the Dense
  layers' computation dtype.

  ```python
  layer = tl.PureLSHSelfAttentionWrapper(n_heads=2, d_qk=8, d_v=8, causal=True, chunk_len=8,
                                         n_hashes=2, n_buckets=4, num_weights=2, bias=False)
  ```
  """
  del sparsity  # only used by weights_format='sparse'
  name = "PureLSHSelfAttentionWrapper"
  if weights_format not in WEIGHTS_FORMATS:
    raise LSHWrapperError(f"{name}: unknown weights_format {weights_format!r}; use 'model'"
                          f"{did_you_mean(str(weights_format), WEIGHTS_FORMATS)}")
  if weights_format != "model":
    raise LSHWrapperError(
        f"{name}: weights_format={weights_format!r} is not supported ('sparse' needs Trax's "
        "FactoredDense/LocallyConvDense, which declax does not have; Trax itself has no "
        "'heads'); use weights_format='model'")
  if num_weights not in (2, 3):
    raise LSHWrapperError(f"{name}: num_weights must be 2 (qk, v) or 3 (q, k, v), got "
                          f"{num_weights}")
  implementation = _implementation(pure_lsh_implementation or PureLSHSelfAttention)
  d_model = d_qk * n_heads
  dtype = pure_lsh_implementation_kwargs.get("dtype")  # declax's: the Dense layers compute in it
  attention = implementation(n_heads=n_heads, d_qk=d_qk, d_v=d_v, causal=causal, masked=masked,
                             mode=mode, output_dropout=output_dropout,
                             attention_dropout=attention_dropout,
                             **pure_lsh_implementation_kwargs)
  return Serial(
      _CheckWidth(d_model=d_model, owner=name),
      _project_and_split_heads(d_model, n_heads, bias, num_weights, rotary_position_emb, mode,
                               dtype),
      # The pure attention takes one mask row per (example, head), heads varying fastest.
      Parallel(None, None, Fn("MaskToHeads", lambda m: jnp.repeat(m, n_heads, axis=0)))
      if masked else [],
      attention,
      MergeHeads(n_heads),
      Dense(d_model, use_bias=bias, dtype=dtype),
      name=name,
  )


# ------------------------------------------------------------------------------------------------
# MixedLSHSelfAttention
# ------------------------------------------------------------------------------------------------


class MixedLSHSelfAttention(PureLSHSelfAttention):
  """Trax's `MixedLSHSelfAttention`: `PureLSHSelfAttention` on inputs longer than `std_length`,
  standard attention (queries and keys both `qk`, unnormalised) on shorter ones, and always
  LSH when `std_length` is None. `(qk, v) -> o` when `causal` (then `masked` must be False),
  `(qk, v, mask) -> o` otherwise (then `masked` must be True), as in Trax.

  Inputs as `PureLSHSelfAttention`'s; `mask` is `(batch, length)` (Trax's) or one row per
  `(example, head)`. `force_no_dropout` zeroes both dropouts. In `'predict'` mode the causal
  standard attention keeps `predict_mem_len` keys and values in the `'cache'` collection (one
  position per call is shorter than `std_length`, so decoding uses it); decoding equals the full
  pass when the full pass is standard attention too (`length <= std_length`).

  ```python
  layer = tl.MixedLSHSelfAttention(n_heads=2, causal=True, chunk_len=8, n_buckets=4,
                                   std_length=16)
  o = layer.apply({}, (qk, v))       # qk, v: (batch * 2, length, d_head); standard if length <= 16
  ```
  """

  n_heads: int = 1
  std_length: int | None = None
  force_no_dropout: bool = False

  def __post_init__(self):
    name = type(self).__name__
    if self.causal == self.masked:
      raise LSHWrapperError(
          f"{name}: causal={self.causal} with masked={self.masked} cannot work: its standard "
          "attention is causal and unmasked, or non-causal and masked (as in Trax); use "
          f"masked={not self.causal}")
    if self.std_length is not None and self.std_length < 1:
      raise LSHWrapperError(f"{name}: std_length must be None or >= 1, got {self.std_length}")
    if self.force_no_dropout:
      object.__setattr__(self, "attention_dropout", 0.0)
      object.__setattr__(self, "output_dropout", 0.0)
    super().__post_init__()

  def _mask_rows(self, mask: jax.Array | None, rows: int) -> jax.Array | None:
    if mask is None or mask.shape[0] == rows:
      return mask
    if mask.shape[0] * self.n_heads != rows:
      raise LSHWrapperError(f"{type(self).__name__}: mask has {mask.shape[0]} rows; expected "
                            f"batch = {rows // self.n_heads} or batch * n_heads = {rows}")
    return jnp.repeat(mask, self.n_heads, axis=0)

  @nn.compact
  def forward(self, qk, v, mask=None):
    chex.assert_rank((qk, v), 3, custom_message=f"{type(self).__name__}: qk and v must be "
                     "(batch * n_heads, length, d)")
    mask = self._mask_rows(mask, qk.shape[0])
    use_lsh = self.std_length is None or qk.shape[1] > self.std_length
    both = self.mode == "predict" and self.std_length is not None and self.is_initializing()
    # In 'predict' mode both paths get their caches at init, as Trax initialises both states.
    lsh = super().forward(qk, v, mask) if use_lsh or both else None
    std = self._standard(qk, v, mask) if not use_lsh or both else None
    return lsh if use_lsh else std

  def _standard(self, qk, v, mask):
    rate = self.attention_dropout
    if self.causal:
      attention = DotProductCausalAttention(dropout=rate, max_inference_length=self.predict_mem_len,
                                            mode=self.mode, name="std_attention")
      return self.call_child(attention, (qk, qk, v))[0].astype(v.dtype)
    out = per_head_attention(self, qk, qk, v, mask.astype(bool)[:, None, :], rate, self.mode)
    return out.astype(v.dtype)
