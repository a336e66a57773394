"""Reformer memory: compiled temp bytes of the training gradient, by depth and by length.

1. Depth: `ReformerLM` at `--layers` (default 2 and 12) with reversible backprop, the same model
   with ordinary backprop (`with_custom_backward(model, False)`) and `TransformerLM` of the same
   residual width. Reversible layers keep activation memory flat in depth.
2. Length: temp bytes per token of a 2-layer `ReformerLM` from 1k to 16k tokens with LSH
   attention (when `declax.layers` has it), chunked `SelfAttention` and full attention.

Nothing runs: each gradient is compiled and `compiled.memory_analysis().temp_size_in_bytes` read.

    python benchmarks/reformer_memory.py            # both tables (a few minutes on CPU)
    python benchmarks/reformer_memory.py --quick    # tiny sizes, a smoke run
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import common


def _temp_bytes(model, tokens_shape) -> int:
  import jax
  import jax.numpy as jnp

  tokens = jax.ShapeDtypeStruct(tokens_shape, jnp.int32)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens)["params"]

  def loss(p, x):
    logits = model.apply({"params": p}, x, rngs={"dropout": jax.random.PRNGKey(1)})
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), x[..., None], -1))

  compiled = jax.jit(jax.grad(loss)).lower(params, tokens).compile()
  return int(compiled.memory_analysis().temp_size_in_bytes)


def depth_table(layers, batch, length, d_model, dropout) -> tuple[str, dict]:
  from declax.layers.reversible import with_custom_backward
  from declax.models import ReformerLM, TransformerLM

  def reformer(n):
    return ReformerLM(256, d_model=d_model, d_ff=2 * d_model, d_attention_key=d_model // 4,
                      d_attention_value=d_model // 4, n_layers=n, n_heads=4, max_len=length,
                      dropout=dropout, attention_type="SelfAttention",
                      attention_kwargs=dict(chunk_len=min(128, length), n_chunks_before=1))

  def transformer(n):
    # Same residual width as the Reformer's two halves together.
    return TransformerLM(256, d_model=2 * d_model, d_ff=2 * d_model, n_layers=n, n_heads=4,
                         max_len=length, dropout=dropout)

  candidates = {"ReformerLM (reversible)": reformer,
                "ReformerLM (ordinary backprop)": lambda n: with_custom_backward(reformer(n),
                                                                                 False),
                "TransformerLM": transformer}
  rows, mib = [], {}
  for name, make in candidates.items():
    values = [_temp_bytes(make(n), (batch, length)) / 2 ** 20 for n in layers]
    mib[name] = values
    rows.append((name, *[f"{v:.1f}" for v in values], f"{values[-1] / values[0]:.2f}x"))
  header = ("model", *[f"{n} layers (MiB)" for n in layers], f"{layers[-1]} / {layers[0]}")
  return common.markdown_table(header, rows), mib


def length_table(lengths, d_model) -> tuple[str, dict]:
  import declax.layers as tl
  from declax.models import ReformerLM

  kinds = {"full attention": ("SelfAttention", {}),
           "chunked SelfAttention (128, 1 before)": ("SelfAttention",
                                                     dict(chunk_len=128, n_chunks_before=1))}
  if hasattr(tl, "LSHSelfAttention"):
    kinds["LSHSelfAttention (chunk 128, 2 hashes)"] = (
        "LSHSelfAttention", dict(chunk_len=128, n_chunks_before=1, n_hashes=2))
  rows, per_token = [], {}
  for name, (attention, kwargs) in kinds.items():
    values = []
    for length in lengths:
      if kwargs.get("n_hashes"):
        kwargs = {**kwargs, "n_buckets": max(2, length // 128)}
      model = ReformerLM(256, d_model=d_model, d_ff=2 * d_model, d_attention_key=d_model // 2,
                         d_attention_value=d_model // 2, n_layers=2, n_heads=2,
                         max_len=length, dropout=0.0, attention_type=attention,
                         attention_kwargs=kwargs)
      values.append(_temp_bytes(model, (1, length)) / length / 1024)
    per_token[name] = values
    rows.append((name, *[f"{v:.1f}" for v in values], f"{values[-1] / values[0]:.2f}x"))
  header = ("attention", *[f"{n // 1024}k" if n >= 1024 else str(n) for n in lengths],
            "last / first")
  return common.markdown_table(header, rows) + "\n(KiB of temp memory per token)", per_token


def main(argv=None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_platform_flags(parser)
  parser.add_argument("--layers", type=int, nargs="+", default=[2, 12])
  parser.add_argument("--lengths", type=int, nargs="+",
                      default=[1024, 2048, 4096, 8192, 16384])
  args = parser.parse_args(argv)
  common.select_platform(args.platform)
  if args.quick:
    layers, lengths, batch, length, d_model = [1, 2], [256, 512], 2, 128, 32
  else:
    layers, lengths, batch, length, d_model = args.layers, args.lengths, 8, 1024, 128
  parts = [f"command: `python benchmarks/reformer_memory.py {' '.join(argv or sys.argv[1:])}`",
           "", f"Depth (batch {batch}, length {length}, d_model {d_model} per half, no dropout):",
           depth_table(layers, batch, length, d_model, 0.0)[0], "",
           "Depth with dropout 0.1:", depth_table(layers, batch, length, d_model, 0.1)[0], "",
           "Length (batch 1, 2 layers, d_model 64 per half):",
           length_table(lengths, 64 if not args.quick else 32)[0]]
  text = "\n".join(parts)
  print(text)
  return text


if __name__ == "__main__":
  main()
