"""Trax's `BERT` encoder and its heads (`BERTClassifierHead`, `BERTRegressionHead`,
`BERTMLMHead`, `BERTPretrainingHead`, `BERTPretrainingLoss`).

The encoder takes `(token_ids, type_ids, idx)` int arrays `(batch, length)` (`idx` is dropped, as
in Trax) and returns `(pooled (batch, d_model), sequence (batch, length, d_model))`. Where Trax
uses its efficient `SelfAttention(masked=True)`, declax uses `tl.Attention` with the padding
mask: the same masked multi-head self-attention with biases. Loading Google's pretrained
checkpoint (Trax's `init_checkpoint`) is not offered.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import declax.layers as tl
from declax.models.blocks import compute_dtype, float32_logits

__all__ = ["BERT", "BERTClassifierHead", "BERTMLMHead", "BERTPretrainingHead",
           "BERTPretrainingLoss", "BERTRegressionHead"]

_HEAD_INIT = {"kernel_initializer": nn.initializers.normal(0.02),
              "bias_initializer": nn.initializers.normal(1e-6)}


class AddBias(tl.Layer):
  """Adds a learned bias (zeros, float32) of the last axis' size, in `x`'s dtype."""

  @nn.compact
  def forward(self, x):
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],)).astype(x.dtype)
    return x + jax.lax.broadcast_to_rank(bias, x.ndim)


def BERTClassifierHead(n_classes: int) -> tl.Serial:  # noqa: N802 (Trax's name)
  """`(pooled, sequence) -> logits (batch, n_classes)` from the pooled output."""
  return tl.Serial(tl.Select([0], n_in=2), tl.Dense(n_classes, **_HEAD_INIT))


def BERTRegressionHead() -> tl.Serial:  # noqa: N802 (Trax's name)
  """`(pooled, sequence) -> (batch,)` regression values from the pooled output."""
  return tl.Serial(tl.Select([0], n_in=2), tl.Dense(1, **_HEAD_INIT),
                   tl.Fn("RemoveAxis", lambda x: jnp.squeeze(x, axis=1)))


def BERTMLMHead(vocab_size: int = 30522) -> tl.Serial:  # noqa: N802 (Trax's name)
  """`(pooled, sequence) -> logits (batch, length, vocab_size)` for masked-token prediction."""
  return tl.Serial(tl.Select([1], n_in=2), tl.Dense(vocab_size, **_HEAD_INIT))


def BERTPretrainingHead(n_classes: int, vocab_size: int = 30522) -> tl.Branch:  # noqa: N802
  """Both heads: `(next-sentence logits, masked-token logits)`."""
  return tl.Branch(BERTClassifierHead(n_classes), BERTMLMHead(vocab_size))


def BERTPretrainingLoss() -> tl.Serial:  # noqa: N802 (Trax's name)
  """`(nsp_logits, mlm_logits, nsp_targets, nsp_weights, mlm_targets, mlm_weights)` -> the sum
  of both weighted cross-entropies."""
  nsp_loss = [tl.Select([0, 2, 3], n_in=6), tl.WeightedCategoryCrossEntropy()]
  mlm_loss = [tl.Select([1, 4, 5], n_in=6), tl.WeightedCategoryCrossEntropy()]
  return tl.Serial(tl.Branch(nsp_loss, mlm_loss), tl.Add())


def BERT(d_model: int = 768, vocab_size: int = 30522, max_len: int = 512,  # noqa: N802
         type_vocab_size: int = 2, n_heads: int = 12, d_ff: int = 3072, n_layers: int = 12,
         head=None, mode: str = "eval", dtype: Any = None) -> tl.Serial:
  """The BERT encoder (defaults: bert-base-uncased), optionally followed by `head()`.

  `dtype` (declax's, e.g. `'bfloat16'`): the encoder's compute dtype; parameters stay float32
  and the outputs (the encoder's pair, or the head's outputs) are cast to float32.

  ```python
  model = BERT(d_model=8, vocab_size=20, max_len=16, n_heads=2, d_ff=16, n_layers=1)
  ids = jnp.ones((2, 5), jnp.int32)
  variables = model.init(jax.random.key(0), (ids, jnp.zeros_like(ids), ids))
  pooled, sequence = model.apply(variables, (ids, jnp.zeros_like(ids), ids))
  ```
  """
  epsilon = 1e-12
  dtype = compute_dtype(dtype)
  embeddings = [
      tl.Select([0, 1, 0], n_in=3),  # drops the 'idx' input
      tl.Parallel(tl.Embedding(vocab_size, d_model, dtype=dtype),
                  tl.Embedding(type_vocab_size, d_model, dtype=dtype), tl.PaddingMask()),
      tl.Add(),
      tl.PositionalEncoding(max_len, mode=mode),
      tl.LayerNorm(epsilon=epsilon, dtype=dtype),
  ]
  encoder = []
  for _ in range(n_layers):
    attention = [tl.Attention(d_model, n_heads=n_heads, mode=mode, dtype=dtype),
                 tl.Select([0], n_in=2)]
    encoder += [
        tl.Select([0, 1, 1]),  # keep a copy of the mask
        tl.Residual(attention, AddBias()),
        tl.LayerNorm(epsilon=epsilon, dtype=dtype),
        tl.Residual(tl.Dense(d_ff, dtype=dtype), tl.Gelu(), tl.Dense(d_model, dtype=dtype)),
        tl.LayerNorm(epsilon=epsilon, dtype=dtype),
    ]
  encoder += [tl.Select([0], n_in=2)]  # drop the mask
  pooler = [tl.Fn("", lambda x: (x[:, 0, :], x), n_out=2), tl.Dense(d_model, dtype=dtype),
            tl.Tanh()]
  bert = tl.Serial(embeddings + encoder + pooler, name="BERT")
  model = bert if head is None else tl.Serial(bert, head())
  return model if dtype is None else tl.Serial(model, _float32_outputs(dtype, model.n_out))


def _float32_outputs(dtype: Any, n_items: int) -> tl.Layer:
  """`float32_logits` on each of the top `n_items` items."""
  return tl.Parallel(*[float32_logits(dtype) for _ in range(n_items)])
