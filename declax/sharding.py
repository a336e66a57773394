"""One config from one CPU to a pod: meshes, logical-axis rules and sharded train state.

The mesh always has the three axes `data`, `fsdp` and `tensor`; a config names their sizes
(`{'data': -1, 'fsdp': 1, 'tensor': 1}`, -1 meaning "the rest of the devices"). Layers name their
parameter dimensions logically (`embed`, `mlp`, `heads`, `kv`, `vocab`, ...) and the rules map
those names onto mesh axes. Parameters without names fall back to FSDP: their largest dimension
divisible by the `fsdp` axis is sharded over it.

```python
mesh = mesh_from_config({'data': 2, 'fsdp': 2, 'tensor': 2})
rules = rules_from_config()                   # the defaults below
state, shardings = create_sharded_state(init_fn, jax.random.key(0), mesh, rules)
```
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from declax.errors import DeclaxError
from declax.text_table import format_table

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")
DEFAULT_MESH = {"data": -1, "fsdp": 1, "tensor": 1}
DEFAULT_RULES = (
    ("batch", BATCH_AXES),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", "tensor"),
    ("vocab", "tensor"),
)
# Unnamed tensors smaller than this many elements stay replicated under the FSDP fallback:
# sharding them saves little memory and costs a collective per use.
FSDP_MIN_SIZE = 2**12

log = logging.getLogger(__name__)


class ShardingError(DeclaxError, ValueError):
  """A mesh, rule or batch that does not fit the devices; the message names the config key."""


# ------------------------------------------------------------------------------------------------
# Mesh and rules
# ------------------------------------------------------------------------------------------------


def mesh_from_config(mesh: Mapping[str, Any] | None = None,
                     devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds a `Mesh('data', 'fsdp', 'tensor')` from `config.mesh` (Auto axes, for Linen).

  Device order follows the physical topology (`mesh_utils.create_device_mesh`, through
  `jax.make_mesh`), so neighbouring mesh positions are neighbouring chips. For a multi-slice TPU
  pod (or a multi-node GPU cluster), `dcn` says how many slices (nodes) each axis spans: the
  axis sizes are the whole mesh, each slice holds `size / dcn` of it over its fast ICI links, and
  the devices are laid out by `mesh_utils.create_hybrid_device_mesh` (slices from the devices'
  `slice_index`, or processes when devices have none, as on GPU clusters).

  ```python
  mesh_from_config({'data': -1})                 # all devices on data
  mesh_from_config({'fsdp': 4, 'tensor': 2})     # data is 1 (missing axes default to 1)
  # two v5e-256 slices: data across the slices (DCN), fsdp within each slice (ICI)
  # mesh_from_config({'data': 2, 'fsdp': 256, 'dcn': {'data': 2}})
  ```
  """
  sizes = dict(mesh if mesh is not None else DEFAULT_MESH)
  dcn = dict(sizes.pop("dcn", None) or {})
  unknown = sorted(set(sizes) - set(MESH_AXES))
  if unknown:
    raise ShardingError(f"config.mesh: unknown axis {unknown}; the mesh axes are {MESH_AXES} "
                        "(and 'dcn' for multi-slice meshes)")
  devices = list(jax.devices() if devices is None else devices)
  full = {axis: int(sizes.get(axis, 1)) for axis in MESH_AXES}
  free = [axis for axis, size in full.items() if size == -1]
  if len(free) > 1:
    raise ShardingError(f"config.mesh {sizes}: only one axis may be -1, got {free}")
  bad = {axis: size for axis, size in full.items() if size == 0 or size < -1}
  if bad:
    raise ShardingError(f"config.mesh {sizes}: axis sizes must be positive or -1, got {bad}")
  fixed = math.prod(size for size in full.values() if size != -1)
  if free:
    if len(devices) % fixed:
      raise ShardingError(f"config.mesh {sizes}: the fixed axes need a multiple of {fixed} "
                          f"devices, but {len(devices)} are available")
    full[free[0]] = len(devices) // fixed
  if math.prod(full.values()) != len(devices):
    raise ShardingError(f"config.mesh {sizes}: data*fsdp*tensor = {math.prod(full.values())}, "
                        f"but {len(devices)} devices are available (set one axis to -1 to use "
                        "the rest)")
  shape = tuple(full[axis] for axis in MESH_AXES)
  axis_types = (AxisType.Auto,) * len(MESH_AXES)
  if all(int(n) == 1 for n in dcn.values()) and set(dcn) <= set(MESH_AXES):
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)
  return Mesh(hybrid_devices(full, dcn, devices), MESH_AXES, axis_types=axis_types)


def hybrid_devices(full: Mapping[str, int], dcn: Mapping[str, int],
                   devices: Sequence[Any]) -> np.ndarray:
  """The device array of a multi-slice mesh: `full` axis sizes, `dcn` slices per axis.

  Slices are the devices' `slice_index` (TPU pods) or, when devices have none, their processes
  (GPU nodes). Errors name `config.mesh.dcn` and the numbers that do not fit.
  """
  from jax.experimental import mesh_utils  # only multi-slice meshes need it

  unknown = sorted(set(dcn) - set(MESH_AXES))
  if unknown:
    raise ShardingError(f"config.mesh.dcn: unknown axis {unknown}; the mesh axes are {MESH_AXES}")
  dcn_shape = tuple(int(dcn.get(axis, 1)) for axis in MESH_AXES)
  uneven = {a: (full[a], d) for a, d in zip(MESH_AXES, dcn_shape, strict=True)
            if d < 1 or full[a] % d}
  if uneven:
    raise ShardingError("config.mesh.dcn: each axis's slice count must divide its size; got "
                        + ", ".join(f"{a}: {d} slices of {n}" for a, (n, d) in uneven.items()))
  ici_shape = tuple(full[a] // d for a, d in zip(MESH_AXES, dcn_shape, strict=True))
  by_slice = getattr(devices[0], "slice_index", None) is not None
  granules = len({getattr(d, "slice_index" if by_slice else "process_index") for d in devices})
  if granules != math.prod(dcn_shape):
    kind = "slices" if by_slice else "processes (no device has a slice_index)"
    raise ShardingError(f"config.mesh.dcn {dict(dcn)} spans {math.prod(dcn_shape)} slices, but "
                        f"the {len(devices)} devices come from {granules} {kind}")
  return mesh_utils.create_hybrid_device_mesh(
      ici_shape, dcn_shape, devices, process_is_granule=not by_slice)


def rules_from_config(rules: Mapping[str, Any] | Sequence[tuple] | None = None) -> tuple:
  """Logical-axis rules: the defaults, overridden name by name by `config.sharding_rules`.

  A rule maps a logical name to a mesh axis, a tuple of mesh axes, or None (replicated).
  """
  merged = dict(DEFAULT_RULES)
  items = rules.items() if isinstance(rules, Mapping) else (rules or ())
  for name, axes in items:
    targets = axes if isinstance(axes, (tuple, list)) else (axes,)
    unknown = [a for a in targets if a is not None and a not in MESH_AXES]
    if unknown:
      raise ShardingError(f"config.sharding_rules[{name!r}]: unknown mesh axis {unknown}; "
                          f"the mesh axes are {MESH_AXES}")
    merged[name] = tuple(axes) if isinstance(axes, list) else axes
  return tuple(merged.items())


@contextlib.contextmanager
def mesh_context(mesh: Mesh, rules: Sequence[tuple]) -> Iterator[None]:
  """Activates the mesh AND the rules: logical constraints are silently dropped without both."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield


# ------------------------------------------------------------------------------------------------
# Parameter and state shardings
# ------------------------------------------------------------------------------------------------


def _is_box(x: Any) -> bool:
  return isinstance(x, nn.Partitioned)


def _path_str(path: tuple) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _axis_size(mesh: Mesh, axes: Any) -> int:
  if axes is None:
    return 1
  axes = axes if isinstance(axes, tuple) else (axes,)
  return math.prod(mesh.shape[a] for a in axes)


def _fsdp_fallback(shape: tuple, mesh: Mesh, min_size: int) -> P:
  fsdp = mesh.shape["fsdp"]
  if fsdp == 1 or math.prod(shape) < min_size:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


def leaf_spec(leaf: Any, mesh: Mesh, rules: Sequence[tuple], path: str = "",
              min_size: int = FSDP_MIN_SIZE) -> P:
  """The mesh `PartitionSpec` of one (possibly boxed) parameter or state leaf.

  Named dimensions follow the rules; a dimension whose size the mesh axes don't divide is
  replicated with a warning; unnamed leaves use the FSDP fallback.
  """
  value = leaf.value if _is_box(leaf) else leaf
  shape = tuple(np.shape(value))
  if not _is_box(leaf) or len(leaf.names) != len(shape):
    return _fsdp_fallback(shape, mesh, min_size)
  spec = list(nn.logical_to_mesh_axes(leaf.names, rules))
  for dim, axes in enumerate(spec):
    size = _axis_size(mesh, axes)
    if size > 1 and shape[dim] % size:
      log.warning("declax.sharding: %s dim %d of size %d is not divisible by mesh axes %s "
                  "(size %d); replicating that dimension", path or "parameter", dim, shape[dim],
                  axes, size)
      spec[dim] = None
  return P(*spec)


def state_shardings(abstract_state: Any, mesh: Mesh, rules: Sequence[tuple],
                    min_size: int = FSDP_MIN_SIZE) -> Any:
  """NamedShardings for every leaf of a (boxed) state pytree, in the unboxed tree's structure."""
  def one(path, leaf):
    return NamedSharding(mesh, leaf_spec(leaf, mesh, rules, _path_str(path), min_size))

  return jax.tree_util.tree_map_with_path(one, abstract_state, is_leaf=_is_box)


def create_sharded_state(init_fn: Callable[[jax.Array], Any], rng: jax.Array, mesh: Mesh,
                         rules: Sequence[tuple]) -> tuple[Any, Any]:
  """Creates the train state directly sharded: it is never materialised whole on one device.

  `init_fn(rng)` returns the state pytree, possibly with Linen's `Partitioned` boxes. Returns
  the unboxed state, placed with its shardings, and the sharding pytree.
  """
  with mesh_context(mesh, rules):
    abstract = jax.eval_shape(init_fn, rng)
    shardings = state_shardings(abstract, mesh, rules)
    state = jax.jit(lambda key: nn.unbox(init_fn(key)), out_shardings=shardings)(rng)
  return state, shardings


def abstract_with_shardings(abstract_state: Any, shardings: Any) -> Any:
  """`ShapeDtypeStruct`s that carry shardings: an Orbax restore target that reshards on load."""
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=s),
      nn.unbox(abstract_state), shardings)


# ------------------------------------------------------------------------------------------------
# Batches
# ------------------------------------------------------------------------------------------------


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Rows of a batch are split over `data` x `fsdp`; `tensor` devices see the same rows."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  """Raises `ShardingError` unless the batch splits evenly over data x fsdp."""
  ways = _axis_size(mesh, BATCH_AXES)
  if global_batch_size % ways:
    raise ShardingError(f"config.train.batch_size={global_batch_size} is not divisible by the "
                        f"mesh's data*fsdp = {ways} (mesh {dict(mesh.shape)})")


def shard_batch(batch: Sequence[Any], mesh: Mesh) -> tuple:
  """Places this process's rows of a batch tuple as global arrays sharded over data x fsdp.

  Every process passes its own rows; the global batch is their concatenation in process order.
  """
  sharding = batch_sharding(mesh)
  placed = []
  for item in batch:
    local = np.asarray(item)
    if local.ndim == 0:
      raise ShardingError("shard_batch: batch items need a leading batch axis, got a scalar")
    check_batch_size(local.shape[0] * jax.process_count(), mesh)
    placed.append(jax.make_array_from_process_local_data(sharding, local))
  return tuple(placed)


# ------------------------------------------------------------------------------------------------
# Seeing it
# ------------------------------------------------------------------------------------------------


def sharding_table(params: Any, mesh: Mesh, rules: Sequence[tuple] | None = None) -> str:
  """Per-parameter `PartitionSpec`, total bytes and bytes per device under `mesh` and `rules`."""
  rules = rules_from_config() if rules is None else rules
  rows = []
  total = per_device = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_box)[0]:
    value = leaf.value if _is_box(leaf) else leaf
    shape, itemsize = tuple(np.shape(value)), np.dtype(value.dtype).itemsize
    spec = leaf_spec(leaf, mesh, rules, _path_str(path))
    shard = NamedSharding(mesh, spec).shard_shape(shape)
    size, shard_size = math.prod(shape) * itemsize, math.prod(shard) * itemsize
    total, per_device = total + size, per_device + shard_size
    rows.append((_path_str(path), str(shape), str(spec), f"{size:,}", f"{shard_size:,}"))
  rows.append(("total", "", "", f"{total:,}", f"{per_device:,}"))
  table = format_table(("parameter", "shape", "spec", "bytes", "bytes/device"), rows)
  return f"Sharding over mesh {dict(mesh.shape)}:\n{table}"


# ------------------------------------------------------------------------------------------------
# Hosts
# ------------------------------------------------------------------------------------------------


class PeerFailureError(DeclaxError, RuntimeError):
  """A collective or coordination call failed because another process of a multi-host job died
  or became unreachable. `cause` is JAX's error."""


# Substrings of JAX/XLA runtime errors that mean "another process is gone" (gloo's TCP
# transport, the coordination service's heartbeats and barriers).
_PEER_FAILURE_MARKERS = ("Gloo", "gloo", "Connection closed by peer", "Connection reset by peer",
                         "heartbeat", "coordination service", "CoordinationService",
                         "Barrier", "barrier", "UNAVAILABLE", "DEADLINE_EXCEEDED")


def is_peer_failure(error: BaseException) -> bool:
  """Whether `error` (raised in a multi-process run) says another process is gone."""
  return jax.process_count() > 1 and any(m in str(error) for m in _PEER_FAILURE_MARKERS)


@contextlib.contextmanager
def peer_failures(what: str | Callable[[], str]) -> Iterator[None]:
  """Turns JAX runtime errors that mean a dead peer into a `PeerFailureError` that says so.

  `what` says what this process was doing (e.g. `'training step 12'`), or is a function
  returning that when the error happens.
  """
  try:
    yield
  except Exception as error:
    if not is_peer_failure(error) or isinstance(error, PeerFailureError):
      raise
    first = str(error).strip().splitlines()[0][:300]
    doing = what() if callable(what) else what
    raise PeerFailureError(
        f"process {jax.process_index()} of {jax.process_count()} lost contact with another "
        f"process during {doing}: {type(error).__name__}: {first}. Another process probably "
        "died or hung (see its log). Restart every process with the same command to resume "
        "from the newest checkpoint.") from error


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           initialization_timeout: int = 300) -> None:
  """Starts `jax.distributed` before anything else touches JAX.

  With no arguments JAX auto-detects the cluster where it can (TPU VMs, SLURM, ...). Must run
  before the first JAX computation. A peer that never arrives makes JAX abort the process
  (SIGABRT) after `initialization_timeout` seconds.
  """
  kwargs = {"initialization_timeout": initialization_timeout}
  if coordinator_address is not None:
    kwargs.update(coordinator_address=coordinator_address, num_processes=num_processes,
                  process_id=process_id)
  jax.distributed.initialize(**kwargs)
  log.info("jax.distributed: process %d of %d, %d local / %d global devices",
           jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())


__all__ = [
    "BATCH_AXES", "DEFAULT_MESH", "DEFAULT_RULES", "MESH_AXES", "PeerFailureError",
    "ShardingError", "abstract_with_shardings", "batch_sharding", "check_batch_size",
    "create_sharded_state", "initialize_distributed", "is_peer_failure", "leaf_spec",
    "mesh_context", "mesh_from_config", "peer_failures", "replicated", "rules_from_config",
    "shard_batch", "sharding_table", "state_shardings",
]
