"""Trax's text API on declax's tokenizers: `tokenize`, `detokenize`, `vocab_size`, `get_vocab`.

`vocab_type` is Trax's: `'char'` (UTF-8 bytes, 256 ids, as Trax's `ByteTextEncoder`; with a
`vocab_file` saved by `CharTokenizer`, that character vocabulary), `'bytes'` (the same bytes),
`'sentencepiece'` (a SentencePiece `.model`) and `'subword'` (Trax's default: here a declax
`tokenizer.json` or SentencePiece model; Trax's tensor2tensor subword files need TensorFlow).

```python
from declax.data import inputs_text as vocab
ids = next(vocab.tokenize(iter(['I have a cat.']), vocab_type='char'))
assert vocab.detokenize(ids, vocab_type='char') == 'I have a cat.'
assert vocab.vocab_size(vocab_type='char', n_reserved_ids=11) == 267
```
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from declax.data import tokenizers
from declax.data.inputs_stream import fmt_args, map_stage
from declax.data.tokenizers import TokenizerError
from declax.errors import did_you_mean

VOCAB_TYPES = ("subword", "sentencepiece", "char", "bytes")
_TF_ONLY = ("bert", "bert-lowercase")


def _resolve_path(vocab_type: str, vocab_file: str | None, vocab_dir: str | None) -> str:
  if vocab_file is None:
    raise TokenizerError(
        f"vocab_type={vocab_type!r} needs vocab_file= (and optionally vocab_dir=): Trax's "
        "default gs://trax-ml/vocabs/ is not reachable offline; train one with "
        "declax.data.tokenizers.SentencePieceTokenizer.train(texts) and save it")
  return os.path.join(os.fspath(vocab_dir), vocab_file) if vocab_dir else os.fspath(vocab_file)


def _looks_like_t2t_subwords(path: str) -> bool:
  try:
    with open(path, "rb") as f:
      head = f.read(64)
  except OSError:
    return False
  return head.startswith(b"'")  # tensor2tensor's SubwordTextEncoder: one quoted piece a line


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, mtime_ns: int) -> tokenizers.Tokenizer:
  del mtime_ns  # part of the key: a rewritten file is read again
  return tokenizers.load(path)


def get_vocab(vocab_type: str = "subword", vocab_file: str | None = None,
              vocab_dir: str | None = None, n_reserved_ids: int = 0) -> tokenizers.Tokenizer:
  """The tokenizer that Trax's `vocab_type`/`vocab_file`/`vocab_dir` name, ids shifted up by
  `n_reserved_ids`.

  >>> get_vocab('char').encode('hi').tolist()
  [104, 105]
  """
  if vocab_type in _TF_ONLY:
    raise TokenizerError(
        f"vocab_type={vocab_type!r} (BERT WordPiece) is not supported by declax (Trax reads it "
        "with TensorFlow); use 'sentencepiece' or 'char'")
  if vocab_type not in VOCAB_TYPES:
    raise TokenizerError(
        f"unknown vocab_type {vocab_type!r}; known: {list(VOCAB_TYPES)}"
        + did_you_mean(vocab_type, VOCAB_TYPES))
  if vocab_type in ("char", "bytes") and vocab_file is None:
    tok: tokenizers.Tokenizer = tokenizers.ByteTokenizer()
  else:
    path = _resolve_path(vocab_type, vocab_file, vocab_dir)
    if vocab_type == "subword" and _looks_like_t2t_subwords(path):
      raise TokenizerError(
          f"{path} is a tensor2tensor SubwordTextEncoder vocabulary (Trax's 'subword'), which "
          "needs TensorFlow; declax reads SentencePiece models and declax tokenizer.json files: "
          "train one with declax.data.tokenizers.SentencePieceTokenizer.train(texts)")
    try:
      mtime = os.stat(path).st_mtime_ns
    except OSError:
      raise TokenizerError(f"vocabulary file {path} does not exist (vocab_type="
                           f"{vocab_type!r}, vocab_file={vocab_file!r}, vocab_dir={vocab_dir!r})"
                           ) from None
    tok = _load_cached(os.path.abspath(path), mtime)
    if vocab_type == "sentencepiece" and tok.kind != "sentencepiece":
      raise TokenizerError(f"{path} holds a {tok.kind!r} tokenizer, not a SentencePiece model "
                           f"(pass vocab_type={tok.kind!r})")
  return tok.with_reserved_ids(n_reserved_ids) if n_reserved_ids else tok


def _tokenize_example(example: Any, keys: Iterable | None, encode) -> Any:
  keys = None if keys is None else list(keys)
  if isinstance(example, (list, tuple)):
    return tuple(encode(x) if keys is None or i in keys else x for i, x in enumerate(example))
  if isinstance(example, dict):
    return {k: encode(x) if keys is None or k in keys else x for k, x in example.items()}
  return encode(example)


def tokenize(stream: Iterable, keys: Iterable | None = None, vocab_type: str = "subword",
             vocab_file: str | None = None, vocab_dir: str | None = None,
             n_reserved_ids: int = 0) -> Iterator:
  """Trax's `tokenize`: strings (alone, or at `keys` of tuples/dicts) become int32 id arrays.

  >>> next(tokenize(iter([('Cat.', 'Dog.')]), keys=[0], vocab_type='char'))
  (array([67, 97, 116, 46], dtype=int32), 'Dog.')
  """
  vocab = get_vocab(vocab_type, vocab_file, vocab_dir, n_reserved_ids)
  for example in stream:
    yield _tokenize_example(example, keys, vocab.encode)


def detokenize(x: Any, vocab_type: str = "subword", vocab_file: str | None = None,
               vocab_dir: str | None = None, n_reserved_ids: int = 0) -> str:
  """Trax's `detokenize`: the text of the ids `x` (a list or array), the opposite of `tokenize`.

  >>> detokenize([72, 105], vocab_type='char')
  'Hi'
  """
  return get_vocab(vocab_type, vocab_file, vocab_dir, n_reserved_ids).decode(np.asarray(x))


def vocab_size(vocab_type: str = "subword", vocab_file: str | None = None,
               vocab_dir: str | None = None, n_reserved_ids: int = 0) -> int:
  """Trax's `vocab_size`: the number of ids used, reserved ids included (the unpadded size;
  the tokenizer's `.vocab_size` is this rounded up to a multiple of 128 for the model).

  >>> vocab_size('char', n_reserved_ids=11)
  267
  """
  return get_vocab(vocab_type, vocab_file, vocab_dir, n_reserved_ids).n_ids


# ---------------------------------------------------------------- stream steps
def Tokenize(keys: Iterable | None = None, vocab_type: str = "subword",  # noqa: N802 - Trax's
             vocab_file: str | None = None, vocab_dir: str | None = None,
             n_reserved_ids: int = 0, *, tokenizer: tokenizers.Tokenizer | None = None):
  """Trax's `Tokenize`: a stream step mapping text (at `keys`, default all) to int32 id arrays.

  `tokenizer=` (declax) passes a tokenizer object instead of naming a file. The vocabulary is
  loaded here, so a missing or corrupt file fails when the pipeline is built.

  >>> step = Tokenize(keys=[0], vocab_type='char')
  >>> next(step([('Hi', 1)]))
  (array([72, 105], dtype=int32), 1)
  """
  if tokenizer is None:
    vocab = get_vocab(vocab_type, vocab_file, vocab_dir, n_reserved_ids)
    what = dict(vocab_type=vocab_type, vocab_file=vocab_file, vocab_dir=vocab_dir,
                n_reserved_ids=n_reserved_ids)
  else:
    vocab = tokenizer.with_reserved_ids(n_reserved_ids) if n_reserved_ids else tokenizer
    what = dict(tokenizer=vocab)
  keys = None if keys is None else list(keys)
  return map_stage(fmt_args("Tokenize", keys=keys, **what),
                   lambda x: _tokenize_example(x, keys, vocab.encode))


def _to_unicode(s: Any) -> Any:
  # Undecodable bytes are dropped (Trax's choice), so no example is lost to one bad byte.
  return str(bytes(s), encoding="utf-8", errors="ignore") if isinstance(s, (bytes, np.bytes_)) \
      else s


def ConvertToUnicode(keys: Iterable | None = None):  # noqa: N802
  """Decodes bytes (e.g. TFDS `Text` features) at `keys` (default all) as UTF-8 `str`.

  >>> next(ConvertToUnicode(keys=[0])([(b'caf\\xc3\\xa9', b'x')]))
  ('café', b'x')
  """
  keys = None if keys is None else list(keys)
  return map_stage(fmt_args("ConvertToUnicode", keys=keys),
                   lambda x: _tokenize_example(x, keys, _to_unicode))


def _spm_vocab(spm_path: str | None) -> tokenizers.Tokenizer:
  if spm_path is None:
    raise TokenizerError("SentencePieceTokenize needs spm_path= (Trax's default, T5's model on "
                         "gs://, is not reachable offline)")
  return get_vocab("sentencepiece", os.path.basename(spm_path), os.path.dirname(spm_path))


def sentencepiece_tokenize(stream: Iterable, spm_path: str | None = None,
                           extra_ids: int = 0) -> Iterator:
  """Trax's `sentencepiece_tokenize`: each text (or 1-tuple of text) becomes an id array."""
  vocab = _spm_vocab(spm_path)
  del extra_ids  # sentinel ids sit above the model's pieces: encoding never produces them
  for example in stream:
    yield vocab.encode(example[0] if isinstance(example, tuple) else example)


def SentencePieceTokenize(spm_path: str | None = None, extra_ids: int = 0):  # noqa: N802
  """Trax's `SentencePieceTokenize`: a stream step encoding text with the model at `spm_path`."""
  vocab = _spm_vocab(spm_path)
  return map_stage(fmt_args("SentencePieceTokenize", spm_path=spm_path, extra_ids=extra_ids),
                   lambda x: vocab.encode(x[0] if isinstance(x, tuple) else x))
