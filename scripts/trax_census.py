"""Census of Trax's public names and their declax counterparts, for docs/trax.md.

Reads Trax's package `__init__`s with `ast` (Trax is not imported, nor needed installed):
`from M import *` contributes M's public top-level functions/classes (or its `__all__`),
`X = configure(m.X)` and `from M import X` contribute `X`. Each name is then looked up in the
matching declax module ("same name") or in `REPLACEMENTS` below; the rest is listed as missing.

    python scripts/trax_census.py                            # print the tables
    python scripts/trax_census.py --update docs/trax.md      # rewrite its census section
    python scripts/trax_census.py --trax PATH/TO/trax ...    # Trax's source elsewhere
"""

from __future__ import annotations

import ast
import importlib
import os
import sys

# Trax package -> the declax modules where the same name would live.
PACKAGES = {
    "layers": ["declax.layers", "declax.layers.efficient_attention",
               "declax.layers.lsh_attention", "declax.layers.position_encodings"],
    "models": ["declax.models", "declax.trax_compat"],
    "optimizers": [],
    "supervised": ["declax.training", "declax.decoding"],
    "fastmath": [],
    "data": ["declax.data"],
}

# Names that declax does not have under Trax's name: what replaces them.
REPLACEMENTS: dict[str, str] = {
    # fastmath: JAX itself
    "fastmath.numpy": "`jax.numpy`", "fastmath.random": "`jax.random`",
    "fastmath.grad": "`jax.grad`", "fastmath.jit": "`jax.jit`", "fastmath.vmap": "`jax.vmap`",
    "fastmath.pmap": "`jax.pmap` / `jax.jit` with shardings (docs/scaling.md)",
    "fastmath.scan": "`jax.lax.scan`", "fastmath.cond": "`jax.lax.cond`",
    "fastmath.fori_loop": "`jax.lax.fori_loop`", "fastmath.map": "`jax.lax.map`",
    "fastmath.remat": "`jax.checkpoint` (`nn.remat`)", "fastmath.stop_gradient":
    "`jax.lax.stop_gradient`", "fastmath.custom_vjp": "`jax.custom_vjp`",
    "fastmath.custom_grad": "`jax.custom_vjp`", "fastmath.logsumexp":
    "`jax.nn.logsumexp`", "fastmath.expit": "`jax.nn.sigmoid`", "fastmath.erf":
    "`jax.scipy.special.erf`", "fastmath.sort_key_val": "`jax.lax.sort_key_val`",
    "fastmath.dynamic_slice": "`jax.lax.dynamic_slice`", "fastmath.dynamic_slice_in_dim":
    "`jax.lax.dynamic_slice_in_dim`", "fastmath.dynamic_update_slice":
    "`jax.lax.dynamic_update_slice`", "fastmath.dynamic_update_slice_in_dim":
    "`jax.lax.dynamic_update_slice_in_dim`", "fastmath.abstract_eval": "`jax.eval_shape`",
    "fastmath.index_add": "`x.at[i].add(v)`", "fastmath.index_update": "`x.at[i].set(v)`",
    "fastmath.index_min": "`x.at[i].min(v)`", "fastmath.index_max": "`x.at[i].max(v)`",
    "fastmath.top_k": "`jax.lax.top_k`", "fastmath.psum": "`jax.lax.psum`",
    "fastmath.device_count": "`jax.device_count()`", "fastmath.local_device_count":
    "`jax.local_device_count()`", "fastmath.is_backend": "(JAX only)", "fastmath.use_backend":
    "(JAX only)", "fastmath.backend": "(JAX only)", "fastmath.backend_name": "(JAX only)",
    "fastmath.set_backend": "(JAX only)", "fastmath.Backend": "(JAX only)",
    "fastmath.tree_flatten": "`jax.tree_util.tree_leaves`", "fastmath.tree_leaves":
    "`jax.tree_util.tree_leaves`", "fastmath.tree_unflatten": "`jax.tree_util.tree_unflatten`",
    "fastmath.nested_map": "`jax.tree_util.tree_map`", "fastmath.nested_map_multiarg":
    "`jax.tree_util.tree_map`",
    "fastmath.nested_zip": "`jax.tree_util.tree_map(lambda *x: x, ...)`",
    "fastmath.nested_stack": "`jax.tree_util.tree_map(lambda *x: jnp.stack(x), ...)`",
    "fastmath.random_uniform": "`jax.random.uniform`", "fastmath.random_normal":
    "`jax.random.normal`",
    # layers: Trax's machinery that Linen provides
    "layers.flatten_weights_and_state": "`jax.tree_util.tree_leaves(variables)`",
    "layers.unflatten_weights_and_state": "`jax.tree_util.tree_unflatten`",
    "layers.np_to_file": "Orbax checkpoints (`declax.training`)",
    "layers.np_from_file": "`declax.trax_compat.files.read_arrays` (Trax files)",
    "layers.to_list": "`jax.tree_util.tree_map(np.asarray, ...)`",
    "layers.shard": "`jax.device_put` with a `NamedSharding` (docs/scaling.md)",
    "layers.unshard": "`jax.device_get`",
    "layers.Accelerate": "`jax.jit` (declax's `Loop` jits the step)",
    "layers.PureLayer": "`declax.layers.Fn` or a `Layer` subclass without parameters",
    "layers.EMPTY_WEIGHTS": "an empty `params` dict", "layers.EMPTY_STATE":
    "an empty collection", "layers.GET_WEIGHTS_FROM_CACHE": "(shared instances share params)",
    "layers.GET_STATE_FROM_CACHE": "(shared instances share state)",
    "layers.Initializer": "`jax.nn.initializers` / `flax.linen.initializers`",
    "layers.GlorotUniformInitializer": "`nn.initializers.glorot_uniform()`",
    "layers.GlorotNormalInitializer": "`nn.initializers.glorot_normal()`",
    "layers.RandomNormalInitializer": "`nn.initializers.normal(stddev)`",
    "layers.RandomUniformInitializer": "`nn.initializers.uniform(scale)`",
    "layers.ScaledInitializer": "`nn.initializers.variance_scaling(...)`",
    "layers.LeCunUniformInitializer": "`nn.initializers.lecun_uniform()`",
    "layers.LeCunNormalInitializer": "`nn.initializers.lecun_normal()`",
    "layers.KaimingUniformInitializer": "`nn.initializers.kaiming_uniform()`",
    "layers.KaimingNormalInitializer": "`nn.initializers.kaiming_normal()`",
    "layers.OrthogonalInitializer": "`nn.initializers.orthogonal()`",
    "layers.AtariConvInit": "`nn.initializers.variance_scaling(...)`",
    "layers.InitializerFromFile": "`declax.trax_compat.init_from_file`",
    "layers.permute_via_gather": "`jnp.take_along_axis` inside `LSHSelfAttention` (JAX "
    "differentiates the gather; no custom VJP needed)",
    "layers.permute_via_sort": "`jnp.take_along_axis` inside `LSHSelfAttention` (JAX "
    "differentiates the gather; no custom VJP needed)",
    # optimizers: optax
    "optimizers.Optimizer": "`optax.GradientTransformation`",
    "optimizers.SGD": "`optax.sgd(lr)`",
    "optimizers.Momentum": "`optax.sgd(lr, momentum=0.9, nesterov=True)`",
    "optimizers.RMSProp": "`optax.rmsprop(lr)`",
    "optimizers.Adam":
        "`optax.adam(lr, eps=1e-5)` (+ Trax's weight decay: `declax.trax_compat.trax_adam`)",
    "optimizers.Adafactor": "`optax.adafactor(lr)`", "optimizers.SM3": "`optax.sm3(lr)`",
    "optimizers.Trainer": "`declax.training` train step (`Loop`)",
    "optimizers.ReversibleSerialTrainer":
        "(not needed: reversible layers define their own backward pass)",
    "optimizers.clip_grads": "`optax.clip_by_global_norm`",
    "optimizers.l2_norm": "`optax.global_norm`",
    # supervised
    "supervised.Trainer": "`declax.training.Loop`",
    "supervised.train": "`declax.training.Loop(...).run(n)` / `declax-train`",
    "supervised.lr_schedules": "`optax` schedules (`optax.warmup_cosine_decay_schedule`, ...)",
}


# Why a name has no declax counterpart yet (first matching rule wins).
MISSING_REASONS: list[tuple[tuple[str, ...], str]] = [
    (("data.",), "Trax's data streams: the text issue ports them to `declax.data` on grain"),
    (("layers.ReversiblePrintShape", "layers.ReversibleRandomPermute",
      "layers.ReversibleReshapePermute"),
     "not ported: research/debugging layers that the Reformer models do not use"),
    (("models.ConfigurableTerraformer",),
     "not ported: the Terraformer (trax.models.research) is outside the Reformer issue"),
    (("layers.for_n_devices", "layers.reshape_by_device", "layers.on_cpu",
      "layers.on_accelerator", "layers.jit_forward", "layers.unshard_in_pmap",
      "layers.mean_or_pmean", "layers.N_WEIGHTS_SHARDS", "fastmath.global_device_count"),
     "device placement is JAX sharding's job in declax (docs/scaling.md)"),
    (("layers.inputs_from_stack", "layers.outputs_onto_stack"),
     "internal to declax's `Serial` (declax.layers.base)"),
    (("optimizers.", "fastmath."), "use the JAX/optax function of the same purpose"),
]


def missing_reason(key: str) -> str:
  for prefixes, reason in MISSING_REASONS:
    if key.startswith(prefixes):
      return reason
  return "not ported (research or rarely used); see docs/trax.md"


def _module_names(path: str) -> list[str]:
  tree = ast.parse(open(path).read())
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                            for t in node.targets):
      return [ast.literal_eval(e) for e in node.value.elts]
  names = []
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
      names.append(node.name)
    elif isinstance(node, ast.Assign):
      for target in node.targets:
        if isinstance(target, ast.Name) and target.id.isupper() and not target.id.startswith("_"):
          names.append(target.id)
  return names


def trax_names(trax_dir: str, package: str) -> list[str]:
  """The public names of `trax.<package>` as its `__init__` defines them."""
  init = os.path.join(trax_dir, package, "__init__.py")
  names: list[str] = []
  for node in ast.parse(open(init).read()).body:
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trax."):
      if any(a.name == "*" for a in node.names):
        rel = node.module.split(".")[1:]
        names += _module_names(os.path.join(trax_dir, *rel) + ".py")
      else:
        base = os.path.join(trax_dir, *node.module.split(".")[1:])
        names += [a.asname or a.name for a in node.names
                  if not (os.path.exists(os.path.join(base, a.name + ".py"))
                          or os.path.isdir(os.path.join(base, a.name)))]
    elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
      names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
      names.append(node.name)
  skip = {"layer_configure", "model_configure", "opt_configure", "data_configure"}
  return sorted({n for n in names if n not in skip and not n.startswith("_")})


def counterpart(package: str, name: str) -> tuple[str, str]:
  """`(kind, text)`: kind is 'same', 'replaced' or 'missing'."""
  for module in PACKAGES[package]:
    if hasattr(importlib.import_module(module), name):
      return "same", f"`{module}.{name}`"
  key = f"{package}.{name}"
  if key in REPLACEMENTS:
    return "replaced", REPLACEMENTS[key]
  return "missing", missing_reason(key)


START, END = "<!-- census:start -->", "<!-- census:end -->"


def census(trax_dir: str) -> str:
  """The census as markdown: one table per Trax package."""
  out, totals = [], {"same": 0, "replaced": 0, "missing": 0}
  for package in PACKAGES:
    rows = [(n, *counterpart(package, n)) for n in trax_names(trax_dir, package)]
    counts = {k: sum(r[1] == k for r in rows) for k in totals}
    totals = {k: totals[k] + counts[k] for k in totals}
    out.append(f"\n### trax.{package} ({len(rows)} names: {counts['same']} same name, "
               f"{counts['replaced']} replaced, {counts['missing']} missing)\n")
    out.append("| Trax | status | declax |\n|---|---|---|")
    out += [f"| `{name}` | {kind} | {text} |" for name, kind, text in rows]
  head = (f"Generated by `python scripts/trax_census.py --update docs/trax.md` from Trax's "
          f"`__init__`s: {sum(totals.values())} names, {totals['same']} under the same name, "
          f"{totals['replaced']} replaced by a JAX/optax/declax call, {totals['missing']} missing.")
  return "\n".join([head, *out])


def main(argv: list[str]) -> None:
  trax_dir = os.path.join("..", "trax-src", "trax")
  if "--trax" in argv:
    trax_dir = argv[argv.index("--trax") + 1]
  text = census(trax_dir)
  if "--update" not in argv:
    print(text)
    return
  doc = argv[argv.index("--update") + 1]
  content = open(doc).read()
  before, rest = content.split(START, 1)
  after = rest.split(END, 1)[1]
  with open(doc, "w") as f:
    f.write(f"{before}{START}\n{text}\n{END}{after}")


if __name__ == "__main__":
  main(sys.argv[1:])
