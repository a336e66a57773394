"""The `Loop`'s rarely changed settings, grouped so its signature stays short."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["LoopOptions"]


@dataclasses.dataclass(frozen=True)
class LoopOptions:
  """The `Loop`'s rarely changed settings, passed to it by name (`Loop(..., prefetch=0)`).

  - `async_checkpoints`: save in the background.
  - `rng_streams`: the RNG names the model draws from in training.
  - `handle_signals`: on SIGTERM, save a checkpoint at the current step and return from `run`
    with `loop.preempted` set (multi-host runs use JAX's preemption sync point instead).
  - `print_summary`: write the model summary and parameter count at construction.
  - `prefetch`: read and place this many training batches ahead in a background thread
    (0: read each batch in the training thread).
  - `check_inputs`: stop with `NonFiniteInputError` on a training batch holding NaN or inf
    (checked on the host, in the prefetch thread).
  - `check_ids`: stop with `IdRangeError` at the step whose batch holds a label outside the
    model's classes or a token id outside an `Embedding`'s vocabulary (checked in the jitted
    train and eval steps; reported with the metrics, no transfer of its own).
  - `eval_on_ema`: evaluate on the EMA parameters when the optimizer keeps them
    (`make_optimizer(ema_decay=...)`).
  - `plateau`: `{'metric': 'eval/loss', **reduce_on_plateau kwargs}` to feed an evaluation
    metric to the optimizer's `plateau` transform after each evaluation.
  - `plot_curves`: draw `output_dir/curves.png` after each evaluation (`declax.plot`).
  - `checkpoint_digests`: store a digest of every array with each checkpoint and verify it on
    restore (flipped bits are reported, not trained on); False skips the pass over the state.
  - `init_params`: `abstract params -> params` for a fresh start (`declax.training.model_init`).
  """

  async_checkpoints: bool = True
  rng_streams: Sequence[str] = ("dropout",)
  handle_signals: bool = True
  print_summary: bool = True
  prefetch: int = 2
  check_inputs: bool = True
  check_ids: bool = True
  eval_on_ema: bool = True
  plateau: Mapping[str, Any] | None = None
  plot_curves: bool = True
  init_params: Callable[[Any], Any] | None = None
  checkpoint_digests: bool = True
