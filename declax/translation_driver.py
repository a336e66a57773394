"""The training run of `configs/translate_gettext.py`: vocabulary, bucketed training, token
metrics on the validation split, BLEU on the test split by beam search against wall time, and
sample translations at the end.

`declax-train --config configs/translate_gettext.py --workdir DIR` lands here because the config
names this function in `config.experiment`. The run resumes like any other (checkpoints and the
stream's position in `DIR`); the vocabulary is trained once and kept in `DIR/tokenizer.json`
(+ `spm.model`), so every checkpoint can be decoded (`declax.training.sample_from_workdir`).

```python
from declax.translation_driver import train_translation
loop = train_translation(config, '/tmp/declax/translate')    # config: translate_gettext's
```
"""

from __future__ import annotations

import os
import time
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from declax import translation
from declax.data import tokenizers
from declax.workdir_decoding import VocabularyMismatchError

__all__ = ["load_or_train_vocabulary", "train_translation"]


def load_or_train_vocabulary(t: ml_collections.ConfigDict, workdir: str | None
                             ) -> tokenizers.Tokenizer:
  """The work directory's tokenizer if it has one (a resumed run), else one trained on the
  training split (and saved there)."""
  if workdir and os.path.exists(os.path.join(workdir, tokenizers.TOKENIZER_FILE)):
    return tokenizers.load(workdir)
  start = time.time()
  pairs = _pairs(t, "train")
  tokenizer = translation.train_vocabulary(pairs, t.vocab_size, t.get("model_type", "unigram"))
  logging.info("SentencePiece: %d pieces from %d training pairs in %.1f s", tokenizer.n_ids,
               len(pairs), time.time() - start)
  if workdir:
    tokenizer.save(workdir)
  return tokenizer


def _pairs(t: ml_collections.ConfigDict, split: str) -> list[tuple[str, str]]:
  return translation.load_pairs(t.dataset, split, t.get("data_dir"),
                                **dict(t.get("builder_kwargs") or {}))


def _check_lengths(pairs: list[tuple[str, str]], tokenizer: tokenizers.Tokenizer,
                   max_length: int) -> None:
  """A `ConfigError` when most pairs are longer than the last bucket boundary (training would
  filter them all out and wait forever for a batch)."""
  from declax.training.config_schema import ConfigError

  lengths = [max(len(tokenizer.encode(a)), len(tokenizer.encode(b))) + 1 for a, b in pairs]
  fits = sum(n <= max_length for n in lengths) / max(len(lengths), 1)
  if fits < 0.5:
    raise ConfigError(
        f"only {fits:.0%} of the validation pairs fit config.translate.boundaries[-1]="
        f"{max_length} tokens (EOS included; median {int(np.median(lengths))}): raise the last "
        "boundary or the vocabulary size")


def _bucket_sizes(boundaries: list[int], tokens_per_batch: int) -> list[int]:
  """Rows per bucket so that every batch holds about `tokens_per_batch` (padded) tokens."""
  return [max(8, tokens_per_batch // b // 8 * 8) for b in boundaries]


def train_translation(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None,
                      **loop_kwargs: Any) -> Any:
  """Trains `config.model` on `config.translate.dataset`; returns the `Loop`.

  Every `translate.bleu_every` steps (and at the end) the test split (its first
  `translate.n_bleu_examples` pairs; None: all of it) is translated by beam search and
  `eval/bleu` is written with the wall time since the start (`eval/wall_s`).
  """
  from declax import registry
  from declax.training import EvalTask, Loop, TrainTask
  from declax.training.config_schema import resolve_config
  from declax.training.from_config import build_model, build_optimizer, to_dict, write_config
  from declax.training.metric_writers import create_default_writer

  start = time.time()
  workdir = None if workdir is None else os.fspath(workdir)
  config = resolve_config(config)  # the base config's defaults under this one's keys
  t = config.translate
  tokenizer = load_or_train_vocabulary(t, workdir)
  with config.unlocked():
    if config.model.get("input_vocab_size") is None:  # one shared vocabulary: the tokenizer's
      config.model.input_vocab_size = tokenizer.vocab_size
    if config.model.input_vocab_size != tokenizer.vocab_size:
      raise VocabularyMismatchError(
          f"config.model.input_vocab_size={config.model.input_vocab_size} but the tokenizer "
          f"in {workdir or 'memory'} has vocab_size {tokenizer.vocab_size}: leave it unset "
          "(None) to take the tokenizer's, or use a fresh work directory")
  model = build_model(config)
  boundaries = list(t.boundaries)
  stream = translation.bucketed_stream(
      t.dataset, tokenizer, boundaries=boundaries,
      batch_sizes=_bucket_sizes(boundaries, t.tokens_per_batch), max_length=boundaries[-1],
      data_dir=t.get("data_dir"), shuffle_queue=t.get("shuffle_queue", 2048),
      seed=config.train.seed)
  tx, schedule = build_optimizer(config)
  task = TrainTask(stream, registry.get_layer(config.train.loss), tx, lr_schedule=schedule,
                   n_steps_per_checkpoint=config.train.checkpoint_every)
  validation = _pairs(t, "validation")
  _check_lengths(validation, tokenizer, boundaries[-1])
  batches = translation.eval_batches(validation, tokenizer, t.eval_batch_size, boundaries[-1])
  metrics = [registry.get_layer(name) for name in config.train.metrics]
  eval_task = EvalTask(lambda: iter(batches), metrics, metric_names=config.train.metric_names,
                       n_eval_batches=None)
  writer = create_default_writer(workdir)
  loop = Loop(model, task, eval_tasks=[eval_task], output_dir=workdir,
              mesh=to_dict(config.get("mesh")) or None,
              sharding_rules=to_dict(config.get("sharding_rules")) or None,
              eval_every=config.train.eval_every, log_every=config.train.log_every,
              seed=config.train.seed, writers=writer, **loop_kwargs)
  test = _pairs(t, "test")
  if t.get("n_bleu_examples"):
    test = test[: t.n_bleu_examples]
  max_len = config.model.get("max_len", 2048)

  def evaluate_bleu() -> list[str]:
    decode_start = time.time()
    hyps = translation.translate(loop.eval_model, {"params": loop.params}, tokenizer,
                                 [s for s, _ in test], max_len=max_len,
                                 batch_size=t.decode_batch_size, beam_size=t.beam_size,
                                 alpha=t.alpha)
    score = translation.bleu(hyps, [r for _, r in test])
    wall = time.time() - start
    writer.write_scalars(loop.step, {"eval/bleu": score, "eval/wall_s": wall,
                                     "eval/decode_s": time.time() - decode_start})
    print(f"step {loop.step}: BLEU {score:.2f} on {len(test)} test pairs, wall {wall:.0f} s "
          f"(decoding {time.time() - decode_start:.0f} s)", flush=True)
    return hyps

  try:
    if workdir is not None:
      write_config(config, workdir)
    hyps = None
    while loop.step < config.train.steps and not loop.preempted:
      loop.run(min(t.bleu_every - loop.step % t.bleu_every, config.train.steps - loop.step))
      if not loop.preempted:
        hyps = evaluate_bleu()
    if hyps is None:
      hyps = evaluate_bleu()
    for (source, reference), hyp in list(zip(test, hyps, strict=True))[: t.n_samples]:
      print(f"  en:  {source!r}\n  ref: {reference!r}\n  hyp: {hyp!r}", flush=True)
  finally:
    loop.close()
  return loop
