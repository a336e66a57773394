"""Compiled temp memory of one attention layer's training gradient, per token, against length.

For each attention type and sequence length the gradient (w.r.t. the parameters and the input)
of `sum(layer(x))` is jitted and compiled, never run: `compiled.memory_analysis()` gives the
temporary bytes XLA plans for it. LSH attention and chunked attention work on chunks, so their
temp bytes per token stay flat as the length grows; full attention (`SelfAttention` without
`chunk_len`) builds `(length, length)` scores, so its bytes per token grow linearly (quadratic
in total).

    python benchmarks/attention_memory.py                        # 1k..16k tokens, ~1 minute on CPU
    python benchmarks/attention_memory.py --quick                # 1k and 2k only

`attention_temp_bytes(kind, length)` is the helper other benchmarks call (e.g. a Reformer
memory table).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

KINDS = ("lsh", "chunked", "full")


def make_layer(kind: str, n_heads: int = 2, d_head: int = 32, chunk_len: int = 128,
               n_hashes: int = 2):
  """The layer measured for `kind`: 'lsh' (LSHSelfAttention), 'chunked' (SelfAttention with
  chunk_len and one chunk before) or 'full' (SelfAttention over the whole sequence); causal."""
  import declax.layers as tl

  common_kwargs = dict(n_heads=n_heads, d_qk=d_head, d_v=d_head, causal=True, mode="train")
  if kind == "lsh":
    return tl.LSHSelfAttention(chunk_len=chunk_len, n_chunks_before=1, n_hashes=n_hashes,
                               **common_kwargs)
  if kind == "chunked":
    return tl.SelfAttention(chunk_len=chunk_len, n_chunks_before=1, **common_kwargs)
  if kind == "full":
    return tl.SelfAttention(**common_kwargs)
  raise ValueError(f"unknown attention kind {kind!r}; choose one of {KINDS}")


def attention_temp_bytes(kind: str, length: int, batch: int = 1, d_model: int = 64,
                         **layer_kwargs) -> common.Memory:
  """Compiled memory of the training gradient of one `kind` layer on `(batch, length,
  d_model)` float32 inputs (nothing is executed).

  ```python
  mem = attention_temp_bytes('lsh', 4096)
  print(mem.temporaries / 4096)       # temp bytes per token
  ```
  """
  import jax
  import jax.numpy as jnp

  layer = make_layer(kind, **layer_kwargs)
  x = jax.ShapeDtypeStruct((batch, length, d_model), jnp.float32)
  variables = jax.eval_shape(lambda x: layer.init(jax.random.PRNGKey(0), x), x)

  def loss(params, x):
    return jnp.sum(layer.apply({"params": params}, x, rngs={"hash": jax.random.PRNGKey(1)}))

  compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(variables["params"], x).compile()
  return common.memory(compiled)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_platform_flags(parser)
  parser.add_argument("--lengths", default="1024,2048,4096,8192,16384")
  parser.add_argument("--kinds", default=",".join(KINDS))
  args = parser.parse_args(argv)
  common.select_platform(args.platform)
  lengths = [1024, 2048] if args.quick else [int(n) for n in args.lengths.split(",")]
  kinds = args.kinds.split(",")
  rows = []
  for length in lengths:
    row = [f"{length:,}"]
    for kind in kinds:
      mem = attention_temp_bytes(kind, length)
      row += [common.fmt_bytes(mem.temporaries), f"{mem.temporaries / length:,.0f}"]
    rows.append(row)
  columns = ["tokens"]
  for kind in kinds:
    columns += [f"{kind} temp", f"{kind} bytes/token"]
  print(common.header("Attention training-gradient temp memory vs length (batch 1, d_model 64, "
                      "2 heads of 32; LSH: chunk 128, 2 hashes; chunked: chunk 128, 1 before)"))
  print(common.markdown_table(columns, rows))


if __name__ == "__main__":
  main()
