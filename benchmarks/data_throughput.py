"""Input-pipeline throughput against what training consumes, on this machine.

For each declax pipeline (digits, Fashion-MNIST, stdlib-source LM windows) this measures examples/s
of `declax.data.make_pipeline` (default settings: in memory, one prefetch thread), and compares it
with the rate at which a jitted Adam train step consumes examples:

- MLP 784-512-512-10, batch 128 (for the image pipelines);
- byte-level transformer LM (2 layers, d_model 128, 4 heads, context 128, batch 32) (for pysrc).

Both models are plain `flax.linen` here. It also times the train step fed from the pipeline, to
show the pipeline's cost inside a loop. Targets on 2 CPU cores: pipeline/consumption >= 20x (MLP)
and >= 5x (LM).

    python benchmarks/data_throughput.py            # ~1 minute (+ first-time dataset prepare)
    python benchmarks/data_throughput.py --quick    # smoke run, a few seconds per measurement
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import declax.data as dd

# ---------------------------------------------------------------- models (plain Linen)


class MLP(nn.Module):
 widths: tuple[int, ...] = (512, 512)
 n_classes: int = 10

 @nn.compact
 def __call__(self, x):
  x = x.reshape(x.shape[0], -1)
  for w in self.widths:
   x = nn.relu(nn.Dense(w)(x))
  return nn.Dense(self.n_classes)(x)


class Block(nn.Module):
 d_model: int
 n_heads: int

 @nn.compact
 def __call__(self, x):
  mask = nn.make_causal_mask(jnp.ones(x.shape[:2], jnp.int32))
  x = x + nn.SelfAttention(num_heads=self.n_heads)(nn.LayerNorm()(x), mask=mask)
  h = nn.Dense(4 * self.d_model)(nn.LayerNorm()(x))
  return x + nn.Dense(self.d_model)(nn.gelu(h))


class ByteLM(nn.Module):
 """Decoder-only transformer over bytes; shifts its input right (Trax's TransformerLM style)."""

 d_model: int = 128
 n_heads: int = 4
 n_layers: int = 2
 max_len: int = 512

 @nn.compact
 def __call__(self, tokens):
  shifted = jnp.pad(tokens, ((0, 0), (1, 0)))[:, :-1]
  pos = self.param("pos", nn.initializers.normal(0.02), (self.max_len, self.d_model))
  x = nn.Embed(256, self.d_model)(shifted) + pos[: tokens.shape[1]]
  for _ in range(self.n_layers):
   x = Block(self.d_model, self.n_heads)(x)
  return nn.Dense(256)(nn.LayerNorm()(x))


def make_train_step(model: nn.Module, example_inputs: np.ndarray):
 """Returns `(state, step)`; `step(state, batch) -> (state, loss)` is jitted Adam on weighted
 cross-entropy over a `(inputs, targets[, weights])` batch."""
 params = model.init(jax.random.PRNGKey(0), example_inputs)
 tx = optax.adam(1e-3)

 def loss_fn(params, batch):
  inputs, targets = batch[0], batch[1]
  weights = batch[2] if len(batch) > 2 else jnp.ones(targets.shape, jnp.float32)
  logits = model.apply(params, inputs)
  xent = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return jnp.sum(xent * weights) / jnp.maximum(jnp.sum(weights), 1.0)

 @jax.jit
 def step(state, batch):
  params, opt_state = state
  loss, grads = jax.value_and_grad(loss_fn)(params, batch)
  updates, opt_state = tx.update(grads, opt_state, params)
  return (optax.apply_updates(params, updates), opt_state), loss

 return (params, tx.init(params)), step


# ---------------------------------------------------------------- measurements


def pipeline_rate(pipeline, seconds: float) -> float:
 """Examples/s of iterating `pipeline` (after its first batch)."""
 n = len(next(pipeline)[0])
 count, start = 0, time.perf_counter()
 while time.perf_counter() - start < seconds:
  next(pipeline)
  count += n
 return count / (time.perf_counter() - start)


def consumption_rate(state, step, next_batch: Callable[[], tuple], seconds: float) -> float:
 """Examples/s of the jitted step on batches from `next_batch()`: fixed device-resident
 batches measure pure compute; `pipeline.__next__` measures the loop a trainer runs."""
 state, loss = step(state, next_batch())  # compile
 loss.block_until_ready()
 count, steps, start = 0, 0, time.perf_counter()
 while steps % 16 or time.perf_counter() - start < seconds:
  batch = next_batch()
  state, loss = step(state, batch)
  count, steps = count + len(batch[0]), steps + 1
 loss.block_until_ready()
 return count / (time.perf_counter() - start)


CASES = (  # dataset, builder kwargs, model, batch size
    ("declax_digits", {}, "mlp", 128),
    ("declax_fashion_mnist", {}, "mlp", 128),
    ("declax_pysrc", {"seq_len": 128}, "lm", 32),
)
MLP_BATCH = (np.zeros((128, 28, 28, 1), np.float32), np.zeros(128, np.int32))


def measure(name: str, kwargs: dict, model_key: str, bs: int, data_dir, secs: float, cache: dict):
 """One table row; `cache` keeps each model's pure-compute rate across rows."""

 def make(**kw):
  return dd.make_pipeline(name, "train", bs, data_dir=data_dir, **kwargs, **kw)

 rate = pipeline_rate(make(), secs)
 disk = pipeline_rate(make(in_memory=False), secs / 2)
 model_inputs = next(make()) if model_key == "lm" else MLP_BATCH
 model = ByteLM() if model_key == "lm" else MLP()
 state, step = make_train_step(model, model_inputs[0])
 if model_key not in cache:  # fixed device-resident batches: pure compute rate
  fixed = itertools.cycle([jax.device_put(model_inputs)])
  cache[model_key] = consumption_rate(state, step, fixed.__next__, secs)
 fed = None
 if name != "declax_digits":  # digits are 8x8: the 784-input MLP cannot eat them
  fed = consumption_rate(state, step, make().__next__, secs)
 return {
     "dataset": name, "batch": bs, "pipeline_ex_per_s": rate, "on_disk_ex_per_s": disk,
     "model": model_key, "consumed_ex_per_s": cache[model_key],
     "ratio": rate / cache[model_key], "fed_ex_per_s": fed,
 }  # fmt: skip


def main() -> None:
 ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
 ap.add_argument("--quick", action="store_true", help="smoke run: short measurements")
 ap.add_argument("--data_dir", default=None, help="default: declax.data.resolve_data_dir()")
 ap.add_argument("--json", default=None, help="also write the results to this JSON file")
 args = ap.parse_args()
 secs = 0.5 if args.quick else 3.0
 print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores")
 rows, cache = [], {}
 for name, kwargs, model_key, bs in CASES:
  try:
   dd.prepare(name, args.data_dir, **kwargs)
  except dd.DatasetUnavailableError as e:
   print(f"{name}: skipped ({e})")
   continue
  rows.append(measure(name, kwargs, model_key, bs, args.data_dir, secs, cache))

 head = ("dataset", "pipeline ex/s", "on-disk ex/s", "model", "train ex/s", "ratio", "fed ex/s")
 print("\n{:22} {:>14} {:>13} {:>5} {:>11} {:>8} {:>9}".format(*head))
 for r in rows:
  fed = f"{r['fed_ex_per_s']:9.0f}" if r["fed_ex_per_s"] else f"{'-':>9}"
  print(
      f"{r['dataset']:22} {r['pipeline_ex_per_s']:14.0f} {r['on_disk_ex_per_s']:13.0f} "
      f"{r['model']:>5} {r['consumed_ex_per_s']:11.0f} {r['ratio']:7.1f}x {fed}"
  )
 print(
     "\nratio = pipeline / training consumption (targets: >= 20x MLP, >= 5x LM); fed = the "
     "train step fed by the pipeline (train ex/s: on fixed device-resident batches)"
 )
 if args.json:
  with open(args.json, "w") as f:
   json.dump(rows, f, indent=1)


if __name__ == "__main__":
 main()
