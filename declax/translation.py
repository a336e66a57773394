"""Translation end to end: sentence pairs, one shared SentencePiece vocabulary, length-bucketed
batches, and BLEU (sacrebleu) of beam-search translations.

The pieces are independent functions; `declax.translation_driver.train_translation` combines
them for `configs/translate_gettext.py`.

```python
from declax import translation
pairs = translation.load_pairs('declax_gettext_translations/de', 'train')     # [(en, de), ...]
tok = translation.train_vocabulary(pairs, vocab_size=4000)
hyps = translation.translate(model, variables, tok, ['File not found'], max_len=128)
score = translation.bleu(hyps, ['Datei nicht gefunden'])
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from declax.data import tokenizers

__all__ = ["bleu", "bucketed_stream", "eval_batches", "load_pairs", "train_vocabulary",
           "translate"]


def load_pairs(dataset: str, split: str, data_dir: str | None = None,
               keys: Sequence[str] | None = None, **builder_kwargs: Any) -> list[tuple[str, str]]:
  """`(source, target)` strings of a prepared translation dataset's split, in stored order.

  `keys` defaults to the builder's `supervised_keys` (`('en', 'de')` for
  `declax_gettext_translations/de`).
  """
  from declax.data.sources import prepare

  _, builder = prepare(dataset, data_dir, **builder_kwargs)
  source_key, target_key = keys or builder.info.supervised_keys[:2]
  source = builder.as_data_source(split=split)
  return [(_text(ex[source_key]), _text(ex[target_key])) for ex in source]


def _text(x: Any) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def train_vocabulary(pairs: Sequence[tuple[str, str]], vocab_size: int = 4000,
                     model_type: str = "unigram") -> tokenizers.SentencePieceTokenizer:
  """One SentencePiece model for both languages, trained on the given (training) pairs only.

  Ids 0 pad, 1 EOS, 2 unknown (declax's tokenizers); the size is rounded up to a multiple of 128.
  """
  texts = [s for pair in pairs for s in pair]
  return tokenizers.SentencePieceTokenizer.train(texts, vocab_size=vocab_size,
                                                 model_type=model_type)


def _encode_pair(tokenizer: tokenizers.Tokenizer, pair: tuple[str, str]) -> tuple:
  eos = [tokenizer.eos_id]
  return (np.concatenate([tokenizer.encode(pair[0]), eos]).astype(np.int32),
          np.concatenate([tokenizer.encode(pair[1]), eos]).astype(np.int32))


def bucketed_stream(dataset: str, tokenizer: tokenizers.Tokenizer, *, boundaries: Sequence[int],
                    batch_sizes: Sequence[int], max_length: int, data_dir: str | None = None,
                    shuffle_queue: int = 2048, seed: int = 0) -> Any:
  """The training stream, built from Trax's combinators (`declax.data`, resumable):

  `TFDS` (shuffled every epoch) -> `Tokenize` -> `AppendValue` (EOS) -> `Shuffle` ->
  `FilterByLength(max_length)` -> `BucketByLength(boundaries, batch_sizes,
  strict_pad_on_len=True)` -> `AddLossWeights(id_to_mask=pad)`: batches `(inputs, targets,
  weights)` of a few fixed shapes (one per bucket), so the step compiles once per bucket.
  """
  from declax import data

  eos = tokenizer.eos_id
  return data.Serial(
      data.TFDS(dataset, data_dir=data_dir, keys=None, train=True, seed=seed,
                tfds_preprocess_fn=_supervised_pair(dataset, data_dir)),
      data.Tokenize(keys=[0, 1], tokenizer=tokenizer),
      data.AppendValue(val={0: [eos], 1: [eos]}),
      data.Shuffle(queue_size=shuffle_queue, seed=seed),
      data.FilterByLength(max_length=max_length, length_keys=[0, 1]),
      data.BucketByLength(boundaries=list(boundaries), batch_sizes=list(batch_sizes),
                          length_keys=[0, 1], strict_pad_on_len=True),
      data.AddLossWeights(id_to_mask=tokenizer.pad_id),
  )()


def _supervised_pair(dataset: str, data_dir: str | None):
  from declax.data.sources import get_builder

  source_key, target_key = get_builder(dataset, data_dir)[1].info.supervised_keys[:2]
  return lambda example: (_text(example[source_key]), _text(example[target_key]))


def _pad(rows: Sequence[np.ndarray], length: int) -> np.ndarray:
  out = np.zeros((len(rows), length), np.int32)
  for i, row in enumerate(rows):
    out[i, : len(row)] = row[:length]
  return out


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def _power_of_two(n: int, smallest: int) -> int:
  return max(smallest, 1 << max(n - 1, 0).bit_length())


def eval_batches(pairs: Sequence[tuple[str, str]], tokenizer: tokenizers.Tokenizer,
                 batch_size: int, max_length: int, multiple: int = 16) -> list[tuple]:
  """Fixed `(inputs, targets, weights)` batches of `pairs` for token-level metrics; pairs longer
  than `max_length` tokens on either side are left out (as in training)."""
  encoded = [_encode_pair(tokenizer, p) for p in pairs]
  encoded = [e for e in encoded if max(len(e[0]), len(e[1])) <= max_length]
  encoded.sort(key=lambda e: max(len(e[0]), len(e[1])))
  batches = []
  for start in range(0, len(encoded), batch_size):
    chunk = encoded[start : start + batch_size]
    chunk += [(np.zeros(1, np.int32), np.zeros(1, np.int32))] * (batch_size - len(chunk))
    length = min(_round_up(max(max(len(a), len(b)) for a, b in chunk), multiple), max_length)
    inputs, targets = _pad([a for a, _ in chunk], length), _pad([b for _, b in chunk], length)
    batches.append((inputs, targets, (targets != tokenizer.pad_id).astype(np.float32)))
  return batches


def translate(model: Any, variables: Any, tokenizer: tokenizers.Tokenizer,
              sources: Sequence[str], *, max_len: int, batch_size: int = 64, beam_size: int = 4,
              alpha: float = 0.6, shortest: int = 16) -> list[str]:
  """Beam-search translations of `sources` (texts), in order.

  Sources are sorted by length and padded to a power of two (at least `shortest`) tokens, so
  a handful of batch shapes compile once each. A source longer than `max_len - 1` tokens is
  cut to fit the encoder (the model cannot read more); each output may take up to
  `2 * padded source length + 10` tokens, within `max_len - 1`.
  """
  from declax.decoding import beam_search

  encoded = [np.append(tokenizer.encode(s)[: max_len - 1], tokenizer.eos_id).astype(np.int32)
             for s in sources]
  order = np.argsort([len(e) for e in encoded], kind="stable")
  results: list[str] = [""] * len(sources)
  for start in range(0, len(order), batch_size):
    index = order[start : start + batch_size]
    rows = [encoded[i] for i in index]
    rows += [rows[-1]] * (batch_size - len(rows))  # full batches: one compile per length
    length = min(_power_of_two(max(len(r) for r in rows), shortest), max_len)
    max_out = min(2 * length + 10, max_len - 1)
    seqs, _ = beam_search(model, variables, _pad(rows, length), max_length=max_out,
                          beam_size=beam_size, alpha=alpha, eos_id=tokenizer.eos_id)
    for i, row in zip(index, np.asarray(seqs[:, 0]), strict=False):
      results[i] = tokenizer.decode(_until_eos(row, tokenizer.eos_id))
  return results


def _until_eos(row: np.ndarray, eos_id: int) -> np.ndarray:
  hits = np.flatnonzero(row == eos_id)
  return row[: hits[0]] if hits.size else row


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  """Corpus BLEU (sacrebleu's default 13a tokenization), 0-100.

  >>> bleu(['Datei nicht gefunden'], ['Datei nicht gefunden'])
  100.00000000000004
  """
  import sacrebleu

  return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)
