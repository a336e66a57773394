"""Orbax checkpoints of the train state and the data position, with resume checks.

A checkpoint is one step directory written by `orbax.checkpoint.CheckpointManager` holding three
items: `state` (the `TrainState` arrays, sharded), `data` (the data iterators' `get_state()`, as
JSON) and `meta` (JSON). Saves are asynchronous and atomic: Orbax writes into
`<step>.orbax-checkpoint-tmp` and renames it to `<step>` when complete, so a crash never leaves a
half-written step where a restore would find it; such temporaries are deleted when the next
`Checkpointer` opens the directory.

Before restoring, the stored tree is compared with the state the model expects: any missing,
unexpected or differently shaped leaf raises `CheckpointMismatchError` listing the paths, rather
than loading part of it. A step directory that cannot be read raises `CheckpointCorruptedError`,
and a save that fails (a full disk, a lost file system) raises `CheckpointSaveError`; neither
deletes or changes any checkpoint.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import shutil
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as preservation

from declax.errors import DeclaxError
from declax.training.digests import array_digests, mismatched
from declax.training.state import path_name, tree_signature

__all__ = ["CheckpointCorruptedError", "CheckpointMismatchError", "CheckpointSaveError",
           "Checkpointer", "OptimizerMismatchError"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MAX_LISTED = 20


class CheckpointMismatchError(DeclaxError, ValueError):
  """A checkpoint whose state tree differs from the model's; lists the differing paths.

  Attributes `missing` (in the model, not in the checkpoint), `unexpected` (in the checkpoint,
  not in the model) and `mismatched` (`(path, checkpoint (shape, dtype), model (shape, dtype))`).
  """

  def __init__(self, directory: str, missing: list[str], unexpected: list[str],
               mismatched: list[tuple[str, Any, Any]]):
    self.directory, self.missing, self.unexpected = directory, missing, unexpected
    self.mismatched = mismatched
    lines = [f"checkpoint {directory} does not match the model's train state "
             "(a different model or optimizer?); nothing was restored."]
    lines += _listing("in the model but missing from the checkpoint", missing)
    lines += _listing("in the checkpoint but not in the model", unexpected)
    lines += _listing("different shape/dtype (checkpoint vs model)",
                      [f"{p}: {_fmt(c)} vs {_fmt(m)}" for p, c, m in mismatched])
    super().__init__("\n".join(lines))


class OptimizerMismatchError(CheckpointMismatchError):
  """A healthy checkpoint whose arrays match the model, but whose optimizer state is shaped
  for another optimizer (adamw saved, adam now): not damage."""

  def __init__(self, directory: str, detail: str):
    self.directory, self.missing, self.unexpected, self.mismatched = directory, [], [], []
    ValueError.__init__(
        self, f"checkpoint {directory} was saved with a different optimizer (its optimizer "
        f"state is structured differently: {detail}); it is not damaged and nothing was "
        "restored. Resume with the optimizer that saved it (config.optimizer), or start a "
        "new workdir from its parameters (config.model_init)")


class CheckpointCorruptedError(DeclaxError, ValueError):
  """A committed step directory that cannot be read (truncated or damaged files, a foreign
  directory with a step's name). Nothing was restored and nothing was deleted.

  Attributes `step`, `directory` (of the step) and `other_steps` (the other checkpoints).
  """

  def __init__(self, step: int, directory: str, reason: str, other_steps: list[int]):
    self.step, self.directory, self.other_steps = step, directory, other_steps
    if other_steps:
      fallback = (f" To resume from step {other_steps[-1]}, the newest other checkpoint, move "
                  f"it aside: mv {directory} {directory}.corrupt")
    else:
      fallback = (f" There is no other checkpoint; move it aside (mv {directory} "
                  f"{directory}.corrupt) to start from step 0.")
    super().__init__(f"checkpoint step {step} in {directory} cannot be read: {reason}. Nothing "
                     f"was restored or deleted.{fallback}")


class CheckpointSaveError(DeclaxError, RuntimeError):
  """Writing a checkpoint failed (e.g. no space left on the device). The incomplete step is
  never loaded (it has no commit) and earlier checkpoints are untouched.

  Attributes `step` (the step that failed), `directory` and `last_good_step` (or None).
  """

  def __init__(self, step: int | None, directory: str, cause: BaseException,
               last_good_step: int | None):
    self.step, self.directory, self.last_good_step = step, directory, last_good_step
    what = f"step {step}" if step is not None else "a checkpoint"
    kept = (f"the newest complete checkpoint, step {last_good_step}, is intact"
            if last_good_step is not None else "no earlier checkpoint exists")
    why = _short(cause)
    why += "" if os.strerror(errno.ENOSPC) in why else _disk_full(directory)
    super().__init__(f"could not save {what} in {directory}: {why}. Training stopped; "
                     f"{kept} (the incomplete {what} is never loaded and is removed on the next "
                     "start). Fix the cause (free disk space?) and rerun to resume.")


def _disk_full(directory: str) -> str:
  """A note when `directory`'s file system is (nearly) full: Orbax's clean-up of a failed save
  can raise its own error (e.g. 'Directory not empty' from late writes), hiding the ENOSPC."""
  try:
    free = shutil.disk_usage(directory).free
  except OSError:
    return ""
  return f" ({os.strerror(errno.ENOSPC)}: {free} bytes free)" if free < 1 << 20 else ""


def _short(error: BaseException, limit: int = 400) -> str:
  """`Type: first line of the message`, cut to about `limit` characters."""
  text = str(error).strip().splitlines()[0] if str(error).strip() else ""
  text = re.sub(r"\s*\[tensorstore_spec=.*", "", text)  # a page of JSON, no news in it
  if len(text) > limit:  # keep the start (what failed) and the end (the OS's reason)
    text = f"{text[: limit // 2]} [...] {text[-limit // 2:]}"
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _fmt(signature: tuple) -> str:
  shape, dtype = signature
  return f"{dtype}{list(shape)}"


def _listing(title: str, items: list[str]) -> list[str]:
  if not items:
    return []
  shown = [f"    {item}" for item in items[:_MAX_LISTED]]
  if len(items) > _MAX_LISTED:
    shown.append(f"    ... and {len(items) - _MAX_LISTED} more")
  return [f"  {title} ({len(items)}):", *shown]


def compare_trees(stored: dict[str, tuple], expected: dict[str, tuple]
                  ) -> tuple[list[str], list[str], list[tuple[str, Any, Any]]]:
  """Differences between two `tree_signature`s: (missing, unexpected, mismatched)."""
  missing = sorted(set(expected) - set(stored))
  unexpected = sorted(set(stored) - set(expected))
  mismatched = [(p, stored[p], expected[p]) for p in sorted(set(stored) & set(expected))
                if stored[p] != expected[p]]
  return missing, unexpected, mismatched


def _older_format_target(stored: Any, abstract: Any) -> tuple[Any, Callable[[Any], Any]]:
  """A restore target for a checkpoint written before the state gained a field that holds no
  arrays here (`TrainState.heads`, empty with one task): the state's other fields as a dict,
  and the function that rebuilds the state from what Orbax returns."""
  tree = getattr(stored, "tree", stored)
  if not dataclasses.is_dataclass(abstract) or not hasattr(tree, "keys"):
    return abstract, lambda x: x
  names = [f.name for f in dataclasses.fields(abstract)]
  absent = [n for n in names if n not in tree.keys() and not jax.tree.leaves(getattr(abstract, n))]
  if not absent:
    return abstract, lambda x: x
  target = {n: getattr(abstract, n) for n in names if n not in absent}

  def rebuild(restored: dict) -> Any:
    return abstract.replace(**{n: jax.tree.unflatten(jax.tree.structure(target[n]),
                                                     jax.tree.leaves(restored[n]))
                               for n in target})

  return target, rebuild


class _Permanent(preservation.PreservationPolicy):
  """Keeps the checkpoints of the steps where `keep(step)` is true (`permanent_checkpoint_at`)."""

  def __init__(self, keep: Callable[[int], bool]):
    self._keep = keep

  def should_preserve(self, checkpoints, *, context):
    del context
    return [bool(self._keep(c.step)) for c in checkpoints]


class Checkpointer:
  """Saves and restores `(state, data_state)` pairs in `directory` with Orbax.

  ```python
  ckpt = Checkpointer('/tmp/run/checkpoints', max_to_keep=3)
  ckpt.save(100, state, {'train': pipeline.get_state()})
  state, data = ckpt.restore(ckpt.latest_step(), abstract_state)
  ```

  **Arguments**
  - `directory`: where the step directories go (created if needed).
  - `max_to_keep`: the newest this many checkpoints are kept; None keeps all.
  - `async_save`: write in a background thread (the arrays are copied to host first, so the
    state may be donated to the next step right away).
  - `best_metric`, `best_mode`: also keep the checkpoint whose `metrics[best_metric]` (given to
    `save`) is the lowest (`'min'`) or highest (`'max'`), through Orbax's `BestN` policy.
  - `permanent`: `step -> bool`; the checkpoints of those steps are never deleted.
  """

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3,
               async_save: bool = True, best_metric: str | None = None,
               best_mode: str = "min", permanent: Callable[[int], bool] | None = None,
               digests: bool = True):
    self.directory = os.path.abspath(os.fspath(directory))
    if os.path.exists(self.directory) and not os.path.isdir(self.directory):
      from declax.training.workdir import WorkdirError

      raise WorkdirError(f"{self.directory} is a file, not a directory: the checkpoints go "
                         "there. Move the file away, or use another output directory")
    self.digests = digests  # store per-array digests at save, verify them on restore
    self.best_metric = best_metric
    # Kept: the newest `max_to_keep`, the best by `best_metric`, the permanent ones.
    policies: list[Any] = [preservation.LatestN(n=max_to_keep)]
    if best_metric is not None:
      policies.append(preservation.BestN(get_metric_fn=lambda m: m[best_metric], n=1,
                                         reverse=best_mode == "min",
                                         keep_checkpoints_without_metrics=False))
    if permanent is not None:
      policies.append(_Permanent(permanent))
    # `cleanup_tmp_directories`: a step whose save was cut short (SIGKILL, a full disk) is left
    # as `<step>.orbax-checkpoint-tmp`; without the cleanup such leftovers of steps that are
    # never saved again would pile up. `best_fn` makes Orbax store the metrics with each step.
    options = ocp.CheckpointManagerOptions(
        create=True, enable_async_checkpointing=async_save, cleanup_tmp_directories=True,
        best_fn=(lambda m: m[best_metric]) if best_metric else None,
        best_mode=best_mode, preservation_policy=preservation.AnyPreservationPolicy(policies))
    # Declaring the handlers lets a fresh manager read the stored tree's metadata on resume.
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler()}
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_handlers=handlers)
    self._async = async_save
    self._pending_step: int | None = None  # the step of the save that may still be running
    self._failed = False

  # -- queries --------------------------------------------------------------------------------

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def best_step(self) -> int | None:
    """The step with the best `best_metric` saved so far (None without one)."""
    return self._manager.best_step() if self.best_metric is not None else None

  def reached_preemption(self, step: int) -> bool:
    """True when JAX's preemption service says all hosts should save now (multi-host)."""
    return self._manager.reached_preemption(step)

  # -- saving ---------------------------------------------------------------------------------

  def save(self, step: int, state: Any, data_state: dict[str, Any] | None = None, *,
           force: bool = False, metrics: dict[str, float] | None = None) -> bool:
    """Starts saving `state` and the JSON `data_state` as step `step`; returns True if it did.

    `metrics` (evaluation results) rank it for `best_metric`. A step already saved is skipped.
    """
    if step in self._manager.all_steps():
      return False
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state or {}),
        meta=ocp.args.JsonSave({"step": int(step), "format_version": FORMAT_VERSION,
                                **({"digests": array_digests(state)} if self.digests else {})}),
    )
    self.wait_until_finished()  # a failure of the previous save is reported as that step's
    self._pending_step = int(step)
    ranked = None if self.best_metric is None or metrics is None else {
        self.best_metric: float(metrics[self.best_metric])}
    try:
      started = bool(self._manager.save(step, args=args, force=force, metrics=ranked))
    except Exception as error:
      raise self._save_error(error) from error
    if not self._async:  # already written
      self._pending_step = None
    return started

  def wait_until_finished(self) -> None:
    """Blocks until pending asynchronous saves are on disk (and committed); raises
    `CheckpointSaveError` if one of them failed."""
    try:
      self._manager.wait_until_finished()
    except Exception as error:
      raise self._save_error(error) from error
    self._pending_step = None

  def _save_error(self, error: Exception) -> CheckpointSaveError:
    self._failed = True
    step, self._pending_step = self._pending_step, None
    good = [s for s in self._committed_steps() if s != step]
    log.error("Saving checkpoint step %s in %s failed: %s", step, self.directory, error)
    return CheckpointSaveError(step, self.directory, error, good[-1] if good else None)

  def _committed_steps(self) -> list[int]:
    """Steps whose directory is in place (renamed from its temporary, i.e. committed)."""
    try:
      names = os.listdir(self.directory)
    except OSError:
      return []
    return sorted(int(n) for n in names
                  if n.isdigit() and os.path.isdir(os.path.join(self.directory, n)))

  # -- restoring ------------------------------------------------------------------------------

  def check(self, step: int, abstract_state: Any) -> None:
    """Raises `CheckpointMismatchError` unless step `step` stores exactly `abstract_state`'s
    leaves (same paths, shapes and dtypes)."""
    try:
      metadata = self._manager.item_metadata(step)
      stored_state = metadata["state"] if "state" in metadata.keys() else None
    except Exception as error:  # noqa: BLE001 - any unreadable metadata is a damaged step
      raise self._corrupted(step, _short(error)) from error
    if stored_state is None:
      raise self._corrupted(step, "it holds no train state (an incomplete copy, or not a "
                            "declax checkpoint)")
    stored = {path_name(p): (tuple(m.shape), str(m.dtype))
              for p, m in jax.tree_util.tree_flatten_with_path(stored_state)[0]
              if getattr(m, "shape", None) is not None}
    missing, unexpected, mismatched = compare_trees(stored, tree_signature(abstract_state))
    if missing or unexpected or mismatched:
      raise CheckpointMismatchError(self._step_dir(step), missing, unexpected, mismatched)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    """Restores step `step` onto `abstract_state` (`ShapeDtypeStruct`s carrying shardings).

    Returns `(state, data_state)`. The stored tree is checked against `abstract_state` first.
    """
    self.check(step, abstract_state)
    try:
      metadata = self._manager.item_metadata(step)
      target, rebuild = _older_format_target(metadata["state"], abstract_state)
      items = {"state": ocp.args.StandardRestore(target),
               **{n: ocp.args.JsonRestore() for n in ("data", "meta") if n in metadata.keys()}}
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
      data_state = restored["data"] if "data" in items else None
      if data_state is not None and not isinstance(data_state, dict):
        raise TypeError(f"its data position is a {type(data_state).__name__}, not a dict")
    except Exception as error:  # noqa: BLE001 - the tree matched: unreadable files are damage
      if "tree structures do not match" in str(error):  # same leaves, other optimizer nesting
        raise OptimizerMismatchError(self._step_dir(step), _short(error, 200)) from error
      raise self._corrupted(step, _short(error)) from error
    self._verify(step, restored["state"], restored["meta"] if "meta" in items else None)
    return rebuild(restored["state"]), dict(data_state or {})

  def _verify(self, step: int, state: Any, meta: Any) -> None:
    """The step named in `meta` is the directory's, and the arrays match their digests."""
    if not isinstance(meta, dict):
      return
    saved_as = meta.get("step")
    if saved_as is not None and int(saved_as) != step:
      raise self._corrupted(step, f"it holds step {saved_as} (its meta item says so): the "
                            "directory was renamed or copied. Rename it back (mv "
                            f"{self._step_dir(step)} {self._step_dir(int(saved_as))})")
    if self.digests and meta.get("digests"):
      bad = mismatched(meta["digests"], array_digests(state))
      if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise self._corrupted(step, f"the array data of {shown} differs from the digest "
                              "stored when it was saved (flipped bits on the disk?)")

  def _corrupted(self, step: int, reason: str) -> CheckpointCorruptedError:
    others = [s for s in self._committed_steps() if s != step]
    return CheckpointCorruptedError(step, self._step_dir(step), reason, others)

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def close(self) -> None:
    """Waits for pending saves and releases the manager's resources.

    A save failure that was already raised is not raised again.
    """
    reported = self._failed
    try:
      self.wait_until_finished()
    except CheckpointSaveError:
      if not reported:
        raise
    finally:
      try:
        self._manager.close()
      except Exception as error:  # noqa: BLE001 - closing after a failed save
        if not self._failed:
          raise
        log.warning("Closing the checkpoint manager after a failed save: %s", error)
