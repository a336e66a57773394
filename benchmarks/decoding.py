"""Sequence-to-sequence decoding speed with and without the encoder cache, side by side.

With `Transformer(cache_encoder_in_predict=True)` (the default) the encoder runs once per input
and every encoder-decoder attention projects the encoder's keys and values once; with `False`
both run again at every generated token (what declax did before, and Trax without
`cache_KV_in_predict`). Both decode the same random-init model (the translation config's shape:
d_model 256, d_ff 1024, 3+3 layers, 4 heads, vocabulary 8064) on the same sources, greedily and
by beam search, timed interleaved; decoding runs its full `--max-length` (no EOS) so the two do
the same number of steps. Reported: generated tokens/s (batch x max_length / time; beam search
counts the returned best sequence only) and the speed-up.

Inside one jitted `while_loop` XLA hoists the loop-invariant encoder of the uncached model out
of the loop on its own (while-loop invariant code motion), so greedy decoding runs the encoder
once either way and the two columns are about equal. Beam search with the cache runs its first
call (encoder, start token) once per input and repeats the cache for each beam; without it the
encoder runs on every beam's copy of the input (batch x beams rows, hoisted out of the loop).
The stream (Trax's way: one model call per token) shows the full saving of the cache.

    python benchmarks/decoding.py               # ~2 minutes on 2 cores
    python benchmarks/decoding.py --quick       # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402


def main(argv: list[str] | None = None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  common.add_platform_flags(parser)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--source-length", type=int, default=32)
  parser.add_argument("--max-length", type=int, default=32)
  parser.add_argument("--beams", type=int, default=4)
  parser.add_argument("--steps", type=int, default=5, help="timed calls per candidate")
  args = parser.parse_args(argv)
  common.select_platform(args.platform)

  import jax
  import jax.numpy as jnp

  from declax import decoding
  from declax.models import Transformer

  size = dict(input_vocab_size=8064, d_model=256, d_ff=1024, n_encoder_layers=3,
              n_decoder_layers=3, n_heads=4, max_len=256, dropout=0.0)
  if args.quick:
    size.update(input_vocab_size=256, d_model=32, d_ff=64, n_encoder_layers=1,
                n_decoder_layers=1, n_heads=2, max_len=64)
    args.batch, args.source_length, args.max_length, args.steps = 4, 8, 8, 2
  rng = np.random.RandomState(0)
  source = jnp.asarray(rng.randint(3, size["input_vocab_size"],
                                   (args.batch, args.source_length)), jnp.int32)
  cached, uncached = Transformer(**size), Transformer(**size, cache_encoder_in_predict=False)
  variables = jax.jit(cached.init)(jax.random.PRNGKey(0), (source, source[:, :4]))

  def greedy(model):
    return lambda: common.block(decoding.autoregressive_sample(
        model, variables, inputs=source, max_length=args.max_length, temperature=0.0))

  def stream(model):
    def run():
      tokens = decoding.autoregressive_sample_stream(model, variables, source, temperature=0.0)
      return [next(tokens) for _ in range(args.max_length)]
    return run

  def beam(model):
    return lambda: common.block(decoding.beam_search(
        model, variables, source, max_length=args.max_length, beam_size=args.beams,
        eos_id=None))

  rows = []
  for name, run in (("greedy, one jitted loop", greedy),
                    ("greedy stream, one call per token", stream),
                    (f"beam search, {args.beams} beams", beam)):
    times = common.interleaved({"cache": run(cached), "no cache": run(uncached)},
                               n_steps=args.steps, warmup=1)
    tokens = args.batch * args.max_length
    fast, slow = common.median(times["cache"]), common.median(times["no cache"])
    rows.append([name, f"{tokens / fast:,.0f} (±{common.spread(times['cache']):.0%})",
                 f"{tokens / slow:,.0f} (±{common.spread(times['no cache']):.0%})",
                 f"{slow / fast:.2f}x"])
  text = "\n".join([
      common.header("Seq2seq decoding: encoder cache vs none", __file__, argv),
      f"Transformer {size}; batch {args.batch}, source length {args.source_length}, "
      f"max_length {args.max_length}; medians of {args.steps} interleaved calls.",
      "",
      common.markdown_table(["decoding", "tokens/s with cache", "tokens/s without",
                             "speed-up"], rows),
  ])
  print(text)
  return text


if __name__ == "__main__":
  main()
