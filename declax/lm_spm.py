"""A language model of Python's stdlib source on a SentencePiece vocabulary, scored in bits per
byte so that it compares with the byte-level `configs/pysrc_lm.py`.

The files and their split are `declax_pysrc`'s (every 10th file held out). A SentencePiece model
(identity normalisation: source round-trips exactly) is trained on lines of the training files
and kept in the work directory. Each split becomes one token stream (files joined by EOS) cut
into windows of `seq_len` tokens. Bits per byte = the summed cross-entropy of the evaluated
tokens in bits / the UTF-8 bytes those tokens spell, written as `eval/bits_per_byte`.

    declax-train --config configs/pysrc_lm_spm.py --workdir /tmp/declax/pysrc_lm_spm
"""

from __future__ import annotations

import math
import os
from typing import Any

import ml_collections
import numpy as np

from declax.data import tokenizers
from declax.data.builders import pysrc

__all__ = ["WindowStream", "piece_bytes", "split_texts", "token_windows", "train_spm_lm"]


def split_texts() -> dict[str, list[str]]:
  """`{'train': [...], 'validation': [...]}`: the stdlib files' texts, split as in declax_pysrc."""
  root = pysrc.stdlib_dir()
  out = {}
  for split, files in pysrc.split_files(pysrc.source_files(root)).items():
    texts = []
    for rel in files:
      with open(os.path.join(root, rel), "rb") as f:
        texts.append(f.read().decode("utf-8", errors="replace"))
    out[split] = texts
  return out


def token_windows(texts: list[str], tokenizer: tokenizers.Tokenizer, seq_len: int) -> np.ndarray:
  """All texts as one EOS-separated token stream, cut into `(n, seq_len)` windows (0-padded)."""
  eos = [tokenizer.eos_id] if tokenizer.eos_id is not None else []
  stream = np.concatenate([np.append(tokenizer.encode(t), eos) for t in texts]).astype(np.int32)
  n = -(-len(stream) // seq_len)
  out = np.zeros(n * seq_len, np.int32)
  out[: len(stream)] = stream
  return out.reshape(n, seq_len)


def piece_bytes(tokenizer: tokenizers.SentencePieceTokenizer) -> np.ndarray:
  """UTF-8 bytes each id spells (byte-fallback pieces: 1; pad, EOS, unknown: 0)."""
  sp = tokenizer.processor
  table = np.zeros(tokenizer.vocab_size, np.int64)
  for i in range(sp.get_piece_size()):
    if sp.is_byte(i):
      table[i] = 1
    elif not (sp.is_control(i) or sp.is_unknown(i)):
      table[i] = len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
  return table


class WindowStream:
  """Endless shuffled batches `(tokens, tokens, weights)` of windows; `get_state()` /
  `set_state()` make its position part of the checkpoint (epoch and offset)."""

  def __init__(self, windows: np.ndarray, batch_size: int, seed: int = 0):
    self.windows, self.batch_size, self.seed = windows, batch_size, seed
    self.epoch, self.offset = 0, 0

  def __iter__(self) -> WindowStream:
    return self

  def __next__(self) -> tuple:
    order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.windows))
    if self.offset + self.batch_size > len(order):
      self.epoch, self.offset = self.epoch + 1, 0
      return next(self)
    rows = self.windows[order[self.offset : self.offset + self.batch_size]]
    self.offset += self.batch_size
    return rows, rows, (rows != 0).astype(np.float32)

  def get_state(self) -> dict:
    return {"epoch": self.epoch, "offset": self.offset}

  def set_state(self, state: dict) -> None:
    self.epoch, self.offset = int(state["epoch"]), int(state["offset"])


def train_spm_lm(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None,
                 **loop_kwargs: Any) -> Any:
  """Trains `config.model` (a `TransformerLM`) on SentencePiece windows; returns the `Loop`."""
  from declax import registry
  from declax.training import EvalTask, Loop, TrainTask
  from declax.training.config_schema import resolve_config
  from declax.training.from_config import build_model, build_optimizer, to_dict, write_config
  from declax.training.metric_writers import create_default_writer

  config = resolve_config(config)  # the base config's defaults under this one's keys
  s = config.spm
  workdir = None if workdir is None else os.fspath(workdir)
  texts = split_texts()
  if workdir and os.path.exists(os.path.join(workdir, tokenizers.TOKENIZER_FILE)):
    tokenizer = tokenizers.load(workdir)
  else:
    lines = [line for text in texts["train"] for line in text.splitlines(keepends=True)]
    tokenizer = tokenizers.SentencePieceTokenizer.train(
        lines, vocab_size=s.vocab_size, model_type=s.model_type, max_sentences=s.max_lines)
    if workdir:
      tokenizer.save(workdir)
  with config.unlocked():
    config.model.vocab_size = tokenizer.vocab_size
  seq_len = config.model.max_len
  train = token_windows(texts["train"], tokenizer, seq_len)
  valid = token_windows(texts["validation"], tokenizer, seq_len)[: s.n_eval_windows]
  eval_batches = [(w, w, (w != 0).astype(np.float32))
                  for w in np.array_split(valid, max(1, len(valid) // s.eval_batch_size))]
  n_bytes = int(piece_bytes(tokenizer)[valid].sum())
  n_tokens = int((valid != 0).sum())
  tx, schedule = build_optimizer(config)
  task = TrainTask(WindowStream(train, config.train.batch_size, config.train.seed),
                   registry.get_layer(config.train.loss), tx, lr_schedule=schedule,
                   n_steps_per_checkpoint=config.train.checkpoint_every)
  metrics = [registry.get_layer(name) for name in config.train.metrics]
  eval_task = EvalTask(lambda: iter(eval_batches), metrics,
                       metric_names=config.train.metric_names, n_eval_batches=None)
  writer = create_default_writer(workdir)
  loop = Loop(build_model(config), task, eval_tasks=[eval_task], output_dir=workdir,
              mesh=to_dict(config.get("mesh")) or None, eval_every=config.train.eval_every,
              log_every=config.train.log_every, seed=config.train.seed, writers=writer,
              **loop_kwargs)
  print(f"SentencePiece: {tokenizer.n_ids} pieces; validation: {n_tokens} tokens spelling "
        f"{n_bytes} bytes ({n_bytes / max(n_tokens, 1):.2f} bytes/token)", flush=True)
  try:
    if workdir is not None:
      write_config(config, workdir)
    while loop.step < config.train.steps and not loop.preempted:
      loop.run(min(config.train.eval_every - loop.step % config.train.eval_every,
                   config.train.steps - loop.step))
      if loop.eval_history and loop.eval_history[-1][0] == loop.step:
        nats = loop.eval_history[-1][1]["eval/loss"]
        bpb = nats * n_tokens / n_bytes / math.log(2)
        writer.write_scalars(loop.step, {"eval/bits_per_byte": bpb})
        print(f"step {loop.step}: {bpb:.3f} bits/byte on held-out files", flush=True)
  finally:
    loop.close()
  return loop
