"""declax against hand-written Flax Linen + Optax: step time, compile time, memory, parameters.

Two models, each written twice: with declax (`declax.models.MLP`, `declax.models.TransformerLM`)
and by hand in plain `flax.linen` below (same parameter count, same FLOPs). All candidates are
trained by Adam with the same hand-written jitted step (`value_and_grad` + `optax.adam`, state
donated); the declax model additionally runs under declax's own `make_train_step` (the step
`Loop` compiles: the loss as `Serial(model, loss_layer)`, plus grad-norm and learning-rate
metrics), reported as a third column.

- MLP: Flatten -> Dense(512) -> Relu -> Dense(512) -> Relu -> Dense(10) -> LogSoftmax, batch 128
  of 28x28, cross-entropy.
- TransformerLM: vocab 256, d_model 256, d_ff 1024, 4 layers, 4 heads, max_len 256, batch
  16 x 256 tokens, dropout 0, next-token cross-entropy.

Steps are interleaved (A, B, C, A, B, C, ...) in one process and summarised by medians; the
step-time ratio is the median of per-round ratios (neighbouring measurements share the
machine's load). Compile time is trace + lower + compile from cleared caches, also interleaved.
Peak memory is `compiled.memory_analysis()`: arguments + outputs - donated + temporaries.

    python benchmarks/overhead.py                      # ~3 minutes on 2 CPU cores
    python benchmarks/overhead.py --models lm --steps 30
    python benchmarks/overhead.py --quick              # tiny sizes, a few seconds
    python benchmarks/overhead.py --platform gpu --dtype bfloat16
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

# ------------------------------------------------------------------------------------------------
# Sizes
# ------------------------------------------------------------------------------------------------

MLP_SIZES = {"full": dict(batch=128, widths=(512, 512), n_classes=10, image=(28, 28)),
             "quick": dict(batch=8, widths=(32, 32), n_classes=10, image=(8, 8))}
LM_SIZES = {"full": dict(vocab=256, d_model=256, d_ff=1024, n_layers=4, n_heads=4, max_len=256,
                         batch=16),
            "quick": dict(vocab=32, d_model=32, d_ff=64, n_layers=1, n_heads=2, max_len=16,
                          batch=2)}


# ------------------------------------------------------------------------------------------------
# Hand-written Flax models
# ------------------------------------------------------------------------------------------------


def flax_models():
  """The hand-written Flax Linen models (defined lazily: JAX must not start before the
  platform is chosen)."""
  import flax.linen as nn
  import jax.numpy as jnp
  import numpy as np

  class FlaxMLP(nn.Module):
    widths: tuple = (512, 512)
    n_classes: int = 10
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
      x = x.reshape((x.shape[0], -1))
      for width in self.widths:
        x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
      return nn.log_softmax(nn.Dense(self.n_classes, dtype=self.dtype)(x).astype(jnp.float32))

  def sinusoids(length: int, d: int):
    frequencies = np.exp(np.arange(0, d, 2) * -(np.log(10000.0) / d))
    angles = np.arange(length)[:, None] * frequencies[None, :]
    return np.stack([np.sin(angles), np.cos(angles)], -1).reshape(length, d).astype(np.float32)

  class FlaxTransformerLM(nn.Module):
    """Pre-norm decoder-only Transformer, the textbook way: Embed + sinusoids, then per layer
    x + MHA(LN(x)) under a causal mask and x + Dense(Relu(Dense(LN(x)))), final LN, logits."""

    vocab: int
    d_model: int
    d_ff: int
    n_layers: int
    n_heads: int
    dtype: Any = None

    @nn.compact
    def __call__(self, tokens):
      length = tokens.shape[1]
      shifted = jnp.pad(tokens, ((0, 0), (1, 0)))[:, :-1]
      x = nn.Embed(self.vocab, self.d_model, dtype=self.dtype)(shifted)
      x = x + sinusoids(length, self.d_model)[None].astype(x.dtype)
      mask = nn.make_causal_mask(tokens)
      for _ in range(self.n_layers):
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.n_heads, dtype=self.dtype)(
            y, y, mask=mask)
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        y = nn.Dense(self.d_ff, dtype=self.dtype)(y)
        x = x + nn.Dense(self.d_model, dtype=self.dtype)(nn.relu(y))
      x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
      return nn.Dense(self.vocab, dtype=self.dtype)(x)

  return FlaxMLP, FlaxTransformerLM


# ------------------------------------------------------------------------------------------------
# Candidates
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Candidate:
  """A train step (not yet jitted), its initial state and a batch on the device."""

  name: str
  step: Callable
  state: Any
  batch: tuple
  n_params: int

  def jitted(self):
    import jax

    return jax.jit(self.step, donate_argnums=0)


def hand_written_step(apply_fn: Callable, loss_fn: Callable, optimizer) -> Callable:
  """`step((params, opt_state), batch) -> ((params, opt_state), loss)`: Optax, nothing else."""
  import jax
  import optax

  def step(state, batch):
    params, opt_state = state
    *inputs, targets, weights = batch

    def loss_of(p):
      return loss_fn(apply_fn(p, *inputs), targets, weights)

    loss, grads = jax.value_and_grad(loss_of)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  return step


def nll_of_log_probs(log_probs, targets, weights):
  import jax.numpy as jnp

  picked = jnp.take_along_axis(log_probs.astype(jnp.float32), targets[..., None], axis=-1)[..., 0]
  return -jnp.sum(picked * weights) / jnp.sum(weights)


def cross_entropy_of_logits(logits, targets, weights):
  import jax.numpy as jnp
  import optax

  values = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  return jnp.sum(values * weights) / jnp.sum(weights)


def declax_train_step_candidate(name, model, loss_layer, optimizer, batch, rng) -> Candidate:
  """declax's own train step (`declax.training.step.make_train_step`) on a `TrainState`."""
  import flax.linen as nn
  import jax

  from declax.training.state import make_init_fn
  from declax.training.step import make_train_step

  inputs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in batch[: model.n_in]]
  state = nn.unbox(jax.jit(make_init_fn(model, optimizer, inputs))(rng))
  step = make_train_step(model, loss_layer, optimizer)
  return Candidate(name, step, state, batch, common.param_count(state.params))


def hand_step_candidate(name, module, loss_fn, optimizer, batch, rng, n_inputs=1) -> Candidate:
  import flax.linen as nn
  import jax

  params = nn.unbox(jax.jit(module.init)(rng, *batch[:n_inputs])["params"])
  step = hand_written_step(lambda p, *x: module.apply({"params": p}, *x), loss_fn, optimizer)
  state = (params, optimizer.init(params))
  return Candidate(name, step, state, batch, common.param_count(params))


def mlp_candidates(size: dict, dtype: str) -> list[Candidate]:
  import jax
  import jax.numpy as jnp
  import optax

  import declax.layers as tl
  from declax.models import MLP

  compute = None if dtype == "float32" else jnp.dtype(dtype)
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(keys[0], (size["batch"], *size["image"], 1), jnp.float32)
  y = jax.random.randint(keys[1], (size["batch"],), 0, size["n_classes"])
  batch = (x, y, jnp.ones((size["batch"],), jnp.float32))
  optimizer = optax.adam(1e-3)
  flax_mlp, _ = flax_models()
  if compute is None:
    model = MLP(layer_widths=size["widths"], n_classes=size["n_classes"])
  else:  # models.MLP has no dtype argument: the same stack, written out
    model = tl.Serial(tl.Flatten(), [[tl.Dense(w, dtype=compute), tl.Relu()]
                                     for w in size["widths"]],
                      tl.Dense(size["n_classes"], dtype=compute), tl.ToFloat(), tl.LogSoftmax())
  rng = keys[2]
  return [
      hand_step_candidate("flax", flax_mlp(tuple(size["widths"]), size["n_classes"], compute),
                          nll_of_log_probs, optimizer, batch, rng),
      hand_step_candidate("declax", model, nll_of_log_probs, optimizer, batch, rng),
      declax_train_step_candidate("declax_step", model, tl.CrossEntropyLoss(), optimizer, batch,
                                  rng),
  ]


def lm_batch(size: dict, seed: int = 0) -> tuple:
  import jax
  import jax.numpy as jnp

  tokens = jax.random.randint(jax.random.PRNGKey(seed), (size["batch"], size["max_len"]), 0,
                              size["vocab"])
  return (tokens, tokens, jnp.ones(tokens.shape, jnp.float32))


def declax_lm(size: dict, dtype: str, **kwargs):
  from declax.models import TransformerLM

  return TransformerLM(size["vocab"], d_model=size["d_model"], d_ff=size["d_ff"],
                       n_layers=size["n_layers"], n_heads=size["n_heads"],
                       max_len=size["max_len"], dropout=0.0,
                       dtype=None if dtype == "float32" else dtype, **kwargs)


def flax_lm(size: dict, dtype: str):
  import jax.numpy as jnp

  _, flax_transformer = flax_models()
  return flax_transformer(size["vocab"], size["d_model"], size["d_ff"], size["n_layers"],
                          size["n_heads"], None if dtype == "float32" else jnp.dtype(dtype))


def lm_candidates(size: dict, dtype: str, with_train_step: bool = True) -> list[Candidate]:
  import jax
  import optax

  import declax.layers as tl

  batch = lm_batch(size)
  optimizer = optax.adam(1e-3)
  rng = jax.random.PRNGKey(1)
  model = declax_lm(size, dtype)
  out = [
      hand_step_candidate("flax", flax_lm(size, dtype), cross_entropy_of_logits, optimizer,
                          batch, rng),
      hand_step_candidate("declax", model, cross_entropy_of_logits, optimizer, batch, rng),
  ]
  if with_train_step:
    out.append(declax_train_step_candidate("declax_step", model,
                                           tl.WeightedCategoryCrossEntropy(), optimizer, batch,
                                           rng))
  return out


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
  name: str
  n_params: int
  step_times: list
  cpu_times: list
  compile_times: list
  memory: Any
  flops: float | None


def measure(candidates: list[Candidate], n_steps: int, compile_repeats: int,
            warmup: int = 2, repeat: int = 1) -> dict[str, Result]:
  """Compiles every candidate `compile_repeats` times, then times `n_steps` samples of
  `repeat` back-to-back steps each, interleaved; returns seconds per step."""
  import jax

  compile_times: dict[str, list[float]] = {c.name: [] for c in candidates}
  compiled: dict[str, Any] = {}
  for i in range(compile_repeats):
    order = candidates if i % 2 == 0 else candidates[::-1]
    for c in order:
      seconds, compiled[c.name] = common.time_compile(c.jitted, (c.state, c.batch))
      compile_times[c.name].append(seconds)
  steppers = {c.name: common.Stepper(compiled[c.name], jax.tree.map(lambda a: a.copy(), c.state),
                                     c.batch, repeat) for c in candidates}
  cpu: dict[str, list[float]] = {}
  times = common.interleaved(steppers, n_steps=n_steps, warmup=warmup, cpu_times=cpu)
  return {c.name: Result(c.name, c.n_params, common.per_step(times[c.name], repeat),
                         common.per_step(cpu[c.name], repeat), compile_times[c.name],
                         common.memory(compiled[c.name]), common.xla_flops(compiled[c.name]))
          for c in candidates}


def report(model_name: str, results: dict[str, Result], baseline: str = "flax") -> str:
  base = results[baseline]
  rows = []
  for r in results.values():
    ratio, noise = common.paired_ratio(r.step_times, base.step_times)
    compile_ratio, _ = common.paired_ratio(r.compile_times, base.compile_times)
    mem_ratio = (r.memory.peak / base.memory.peak) if r.memory and base.memory else float("nan")
    cpu_ratio, cpu_noise = common.paired_ratio(r.cpu_times, base.cpu_times)
    ratio_text = (f"{ratio:.3f} (±{100 * noise:.1f}%)" if r is not base else "1 (baseline)")
    cpu_text = (f"{cpu_ratio:.3f} (±{100 * cpu_noise:.1f}%)" if r is not base else "1")
    rows.append([
        r.name, f"{r.n_params:,}",
        f"{common.fmt_seconds(common.median(r.step_times))} "
        f"(±{100 * common.spread(r.step_times):.0f}%)",
        common.fmt_seconds(min(r.step_times)),
        ratio_text, cpu_text,
        common.fmt_seconds(common.median(r.compile_times)), f"{compile_ratio:.2f}",
        common.fmt_bytes(r.memory.peak) if r.memory else "n/a", f"{mem_ratio:.3f}",
        f"{r.flops / 1e9:.4g}" if r.flops else "n/a",
    ])
  columns = ["candidate", "params", "step (median, ±IQR)", "step (best)",
             f"step ratio vs {baseline}", "CPU-time ratio", "compile", "compile ratio",
             "peak memory",
             "memory ratio", "XLA GFLOP/step"]
  return f"**{model_name}**\n\n" + common.markdown_table(columns, rows)


def check_targets(model_name: str, results: dict[str, Result]) -> list[str]:
  """The issue's targets for the declax model against Flax: lines saying met / not met."""
  base, ours = results["flax"], results["declax"]
  step, _ = common.paired_ratio(ours.step_times, base.step_times)
  compile_ratio, _ = common.paired_ratio(ours.compile_times, base.compile_times)
  memory_ratio = ours.memory.peak / base.memory.peak if ours.memory and base.memory else None
  lines = []
  for what, value, target in (("step ratio", step, 1.02), ("compile ratio", compile_ratio, 1.25),
                              ("memory ratio", memory_ratio, 1.05)):
    if value is None:
      lines.append(f"- {model_name} {what}: n/a")
      continue
    verdict = "met" if value <= target else "NOT met"
    lines.append(f"- {model_name} {what} {value:.3f} (target <= {target}): {verdict}")
  if ours.n_params != base.n_params:
    lines.append(f"- {model_name}: parameter counts differ ({ours.n_params} vs {base.n_params})")
  return lines


def main(argv: list[str] | None = None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  common.add_platform_flags(parser)
  parser.add_argument("--models", default="mlp,lm", help="comma-separated: mlp, lm")
  parser.add_argument("--steps", type=int, default=None, help="timed steps per candidate")
  parser.add_argument("--compile-repeats", type=int, default=None)
  args = parser.parse_args(argv)
  common.select_platform(args.platform)
  size = "quick" if args.quick else "full"
  models = [m.strip() for m in args.models.split(",") if m.strip()]
  out = [common.header("Overhead: declax vs hand-written Flax Linen + Optax", __file__, argv),
         f"dtype {args.dtype}; ratios are declax / Flax (below 1: declax is faster).", ""]
  targets = []
  for name in models:
    if name == "mlp":
      candidates = mlp_candidates(MLP_SIZES[size], args.dtype)
      steps = args.steps or (3 if args.quick else 60)
      repeat = 1 if args.quick else 10  # samples of 10 steps: less per-call jitter
      repeats = args.compile_repeats or (1 if args.quick else 5)
      title = "MLP 784-512-512-10, batch 128, Adam" if not args.quick else "MLP (quick sizes)"
    elif name == "lm":
      candidates = lm_candidates(LM_SIZES[size], args.dtype)
      steps = args.steps or (3 if args.quick else 24)
      repeat = 1
      repeats = args.compile_repeats or (1 if args.quick else 5)
      title = ("TransformerLM d256 ff1024 4 layers 4 heads, batch 16x256, Adam"
               if not args.quick else "TransformerLM (quick sizes)")
    else:
      raise SystemExit(f"unknown model {name!r}: use mlp, lm")
    results = measure(candidates, n_steps=steps, compile_repeats=repeats,
                      warmup=1 if args.quick else 3, repeat=repeat)
    sample = f"samples of {repeat} steps" if repeat > 1 else "single steps"
    out += [report(title, results), "",
            f"{steps} interleaved samples ({sample}) per candidate, {repeats} compile(s) each; "
            "step and compile ratios = medians of per-round ratios (± IQR/median).", ""]
    targets += check_targets(name.upper(), results)
  out += ["Targets (declax model vs Flax, same hand-written step):", *targets, ""]
  text = "\n".join(out)
  print(text)
  return text


if __name__ == "__main__":
  main()
