"""Metric writers with clu's method names, none of which needs TensorFlow.

`clu.metric_writers` imports TensorFlow when the package is imported, so declax ships its own
small writers with the same interface (`write_scalars(step, scalars)`, `write_texts`,
`write_hparams`, `flush`, `close`):

- `ConsoleWriter`: one human-readable line per call (the training progress line).
- `JsonlWriter`: one JSON object per line, `{"step": 100, "train/loss": 0.31, ...}`.
- `TensorBoardWriter`: TensorBoard event files through tensorboardX (a dependency of declax).
- `MultiWriter`: fans out to several writers.

`create_default_writer(logdir)` combines them; only process 0 writes.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import jax
import numpy as np

__all__ = ["ConsoleWriter", "JsonlWriter", "MetricWriter", "MultiWriter", "TensorBoardWriter",
           "create_default_writer", "write_curves", "write_model_summary"]

log = logging.getLogger(__name__)


def _scalar(value: Any) -> float | int:
  value = np.asarray(value).item()
  return value if isinstance(value, (int, float)) else float(value)


class MetricWriter:
  """The interface (clu's): every method is optional to override."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    pass

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    pass

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    pass

  def flush(self) -> None:
    pass

  def close(self) -> None:
    self.flush()


# ---- Console -------------------------------------------------------------------------------------


def _format_value(name: str, value: float) -> str:
  if name.endswith("steps_per_sec"):
    return f"{value:.1f} steps/s"
  if name.endswith("examples_per_sec"):
    return f"{value:,.0f} ex/s"
  if name.endswith("eta_seconds"):
    return "ETA " + (str(datetime.timedelta(seconds=round(value))) if math.isfinite(value)
                     else "?")
  short = name.removeprefix("train/")
  if isinstance(value, int):
    return f"{short} {value}"
  if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
    return f"{short} {value:.3e}"
  return f"{short} {value:.4f}"


# Console lines also go to this logger. It does not propagate, so they are not printed twice;
# `declax-train --log_dir DIR` attaches absl's log file to it (Flax examples' `logging.info`).
CONSOLE_LOG = logging.getLogger("declax.console")
CONSOLE_LOG.propagate = False


class ConsoleWriter(MetricWriter):
  """Prints `step 100/1000 | loss 0.3121 | learning_rate 0.0010 | 412.3 steps/s | ETA 0:00:02`.

  `total_steps` (optional, settable) adds `/total` after the step.
  """

  def __init__(self, stream: TextIO | None = None, total_steps: int | None = None):
    self._stream = stream
    self.total_steps = total_steps

  def _print(self, text: str) -> None:
    stream = self._stream or sys.stdout
    print(text, file=stream, flush=True)
    CONSOLE_LOG.info(text)

  def _step(self, step: int) -> str:
    return f"step {step}" + (f"/{self.total_steps}" if self.total_steps else "")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    parts = [_format_value(k, _scalar(v)) for k, v in scalars.items()]
    self._print(" | ".join([self._step(step), *parts]))

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    for name, text in texts.items():
      self._print(f"{self._step(step)} | {name}:\n{text}")

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._print(hparams_table(hparams))


def hparams_table(hparams: Mapping[str, Any], width: int = 100) -> str:
  """`hparams:` then one row per config section (`model  name=MLP, n_classes=10`), unset (None)
  values left out and long rows wrapped, instead of one line of every key.

  ```python
  hparams_table({'model.name': 'MLP', 'train.steps': 10})   # 'hparams:\n  model  name=MLP\n  ...'
  ```
  """
  sections: dict[str, list[str]] = {}
  for key, value in hparams.items():
    section, _, name = key.rpartition(".") if "." in key else ("", "", key)
    if value is not None:
      sections.setdefault(section.split(".")[0] if section else "", []).append(
          f"{key[len(section.split('.')[0]) + 1:] if section else name}={value}")
  pad = max((len(s) for s in sections), default=0)
  lines = ["hparams:"]
  for section, items in sections.items():
    line, indent = f"  {section:<{pad}}  ", " " * (pad + 4)
    for i, item in enumerate(items):
      text = item + ("," if i < len(items) - 1 else "")
      if len(line) + len(text) > width and not line.endswith("  "):
        lines.append(line.rstrip())
        line = indent
      line += text + " "
    lines.append(line.rstrip())
  return "\n".join(lines)


# ---- JSON lines ----------------------------------------------------------------------------------


class JsonlWriter(MetricWriter):
  """Appends `{"step": step, name: value, ...}` lines to `path` (big_vision's format).

  Non-finite values are written as the strings `"nan"`, `"inf"`, `"-inf"`, so every line stays
  valid JSON. Texts go to `<path>.texts.jsonl`'s sibling, hparams to `hparams.json` next to it.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    self._file = open(self.path, "a")  # noqa: SIM115 (kept open for the writer's lifetime)

  @staticmethod
  def _json_value(value: Any) -> Any:
    value = _scalar(value)
    return value if math.isfinite(value) else str(value)

  def _write(self, record: dict) -> None:
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()  # a line per log interval: cheap, and `tail -f` works

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    self._write({"step": int(step), **{k: self._json_value(v) for k, v in scalars.items()}})

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    self._write({"step": int(step), **{k: str(v) for k, v in texts.items()}})

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    path = os.path.join(os.path.dirname(os.path.abspath(self.path)), "hparams.json")
    with open(path, "w") as f:
      json.dump(dict(hparams), f, indent=2, default=str)

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()


# ---- TensorBoard ---------------------------------------------------------------------------------


class TensorBoardWriter(MetricWriter):
  """TensorBoard event files in `logdir`, written by tensorboardX (no TensorFlow needed)."""

  def __init__(self, logdir: str | os.PathLike):
    import tensorboardX

    self.logdir = os.fspath(logdir)
    self._writer = tensorboardX.SummaryWriter(self.logdir, flush_secs=30)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    for name, value in scalars.items():
      self._writer.add_scalar(name, _scalar(value), global_step=int(step))

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    for name, text in texts.items():
      self._writer.add_text(name, f"```\n{text}\n```", global_step=int(step))

  def write_hparams(self, hparams: Mapping[str, Any], metrics: Sequence[str] = ()) -> None:
    """The hyperparameters for TensorBoard's HParams dashboard, in this run's own event file,
    so they sit beside its scalars; `metrics` are the scalar tags the dashboard shows as
    columns (default `train/loss`)."""
    from tensorboardX.summary import hparams as hparams_summary

    values = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
              for k, v in hparams.items()}
    experiment, start, end = hparams_summary(values, {m: 0.0 for m in (metrics or
                                                                        ["train/loss"])})
    file_writer = self._writer._get_file_writer()
    for proto in (experiment, start, end):
      file_writer.add_summary(proto)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


# ---- Fan-out -------------------------------------------------------------------------------------


class MultiWriter(MetricWriter):
  """Writes to every writer in `writers`."""

  def __init__(self, writers: Sequence[MetricWriter]):
    self.writers = list(writers)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    for w in self.writers:
      w.write_scalars(step, scalars)

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    for w in self.writers:
      w.write_texts(step, texts)

  def write_hparams(self, hparams: Mapping[str, Any], metrics: Sequence[str] = ()) -> None:
    for w in self.writers:
      if metrics and isinstance(w, (MultiWriter, TensorBoardWriter)):
        w.write_hparams(hparams, metrics=metrics)
      else:
        w.write_hparams(hparams)

  def flush(self) -> None:
    for w in self.writers:
      w.flush()

  def close(self) -> None:
    for w in self.writers:
      w.close()


def write_model_summary(writer: MetricWriter, model: Any, model_inputs: Sequence[Any],
                        params: Any, mesh: Any, step: int, output_dir: str | None,
                        resumed_from: int | None = None, directory: str | None = None) -> str:
  """Writes the model's summary table (`declax.summary`), mesh and parameter count through
  `writer` and to `output_dir/model_summary.txt`; returns the text."""
  from declax.layers.base import summary

  inputs = model_inputs[0] if len(model_inputs) == 1 else tuple(model_inputs)
  text = summary(model, inputs)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  text += f"\nMesh: {dict(mesh.shape)}; devices: {jax.device_count()}"
  if resumed_from is not None:
    text += f"\nResumed from step {resumed_from} ({directory})"
  writer.write_texts(step, {"model_summary": text})
  writer.write_scalars(step, {"num_params": n_params})
  if output_dir is not None:
    with open(os.path.join(output_dir, "model_summary.txt"), "w") as f:
      f.write(text + "\n")
  return text


def write_curves(workdir: str | os.PathLike) -> str | None:
  """Redraws `workdir/curves.png` from its `metrics.jsonl` (`declax.plot`); returns the path,
  or None (with a warning) when it cannot be drawn."""
  from declax.plot import plot_curves

  if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):  # other writers than ours
    return None
  try:
    return plot_curves(workdir)
  except Exception as error:  # noqa: BLE001 - a picture must never stop training
    log.warning("Could not draw the training curves: %s", error)
    return None


def create_default_writer(logdir: str | os.PathLike | None = None, *, console: bool = True,
                          jsonl: bool = True, tensorboard: bool = True,
                          process_index: int | None = None) -> MultiWriter:
  """Console output, plus `logdir/metrics.jsonl` and TensorBoard files in `logdir` when given.

  On processes other than 0 the result writes nothing.
  """
  process_index = jax.process_index() if process_index is None else process_index
  if process_index != 0:
    return MultiWriter([])
  writers: list[MetricWriter] = [ConsoleWriter()] if console else []
  if logdir is not None:
    if jsonl:
      writers.append(JsonlWriter(os.path.join(logdir, "metrics.jsonl")))
    if tensorboard:
      try:
        writers.append(TensorBoardWriter(os.path.join(logdir, "tensorboard")))
      except ImportError as e:
        log.warning("No TensorBoard files: %s", e)
  return MultiWriter(writers)
