"""Text <-> token ids: UTF-8 bytes, characters and SentencePiece (unigram or BPE, trained locally).

Every tokenizer has `encode(text) -> int32 array`, `decode(ids) -> str`, `n_ids` (the ids it can
produce) and `vocab_size`: `n_ids` rounded up to a multiple of 128 so the embedding and output
layers shard evenly. The ids in `[n_ids, vocab_size)` are padding: `encode` never produces them,
so a trained model learns to give them ~zero probability, and `decode` skips them.
`save(directory)` writes `tokenizer.json` (+ `spm.model`) next to a prepared dataset or into a
work directory; `load(directory)` reads it back, so a checkpoint can always be decoded.

```python
from declax.data import tokenizers
texts = ['def f(x):\\n', '  return x\\n'] * 50
tok = tokenizers.SentencePieceTokenizer.train(texts, vocab_size=300)
ids = tok.encode('def f(x):\\n')
assert tok.decode(ids) == 'def f(x):\\n' and tok.vocab_size % 128 == 0
```
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from declax.errors import DeclaxError

PAD_MULTIPLE = 128
TOKENIZER_FILE = "tokenizer.json"
SPM_FILE = "spm.model"
FORMAT = "declax.tokenizer"
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2  # T5's convention, used by the tokenizers declax trains


class TokenizerError(DeclaxError, ValueError):
  """A tokenizer file that is missing, corrupt or of an unknown kind, or a bad tokenizer option."""


def round_up(n: int, multiple: int = PAD_MULTIPLE) -> int:
  """`n` rounded up to a multiple of `multiple` (`round_up(259) == 384`)."""
  return -(-n // multiple) * multiple


class Tokenizer:
  """The common interface; subclasses set `kind`, `n_ids`, `pad_id`, `eos_id` and the coders.

  `n_reserved_ids` shifts every id up (Trax's meaning: ids below it are left for the user).
  """

  kind = "abstract"

  def __init__(self, n_reserved_ids: int = 0, pad_to_multiple: int = PAD_MULTIPLE):
    if not isinstance(n_reserved_ids, int) or n_reserved_ids < 0:
      raise TokenizerError(f"n_reserved_ids must be an int >= 0, got {n_reserved_ids!r}")
    if not isinstance(pad_to_multiple, int) or pad_to_multiple < 1:
      raise TokenizerError(f"pad_to_multiple must be an int >= 1, got {pad_to_multiple!r}")
    self.n_reserved_ids = n_reserved_ids
    self.pad_to_multiple = pad_to_multiple

  # Subclasses: the unshifted coders and sizes.
  def _encode(self, text: str) -> list[int]:
    raise NotImplementedError

  def _decode(self, ids: list[int]) -> str:
    raise NotImplementedError

  _n_base_ids = 0
  _base_pad_id: int | None = None
  _base_eos_id: int | None = None

  @property
  def n_ids(self) -> int:
    """How many ids `encode` can produce (reserved ids included): Trax's vocab size."""
    return self._n_base_ids + self.n_reserved_ids

  @property
  def vocab_size(self) -> int:
    """`n_ids` rounded up to `pad_to_multiple` (128): the size to give the model."""
    return round_up(self.n_ids, self.pad_to_multiple)

  def _shift(self, base_id: int | None) -> int | None:
    return None if base_id is None or base_id < 0 else base_id + self.n_reserved_ids

  @property
  def pad_id(self) -> int:
    """The id that pads batches (0 unless the model file says otherwise)."""
    shifted = self._shift(self._base_pad_id)
    return 0 if shifted is None else shifted

  @property
  def eos_id(self) -> int | None:
    """The end-of-sequence id, None when the vocabulary has none."""
    return self._shift(self._base_eos_id)

  def encode(self, text: str | bytes) -> np.ndarray:
    """`text` as an int32 array of ids (bytes are read as UTF-8)."""
    if isinstance(text, (bytes, np.bytes_)):
      text = bytes(text).decode("utf-8", errors="ignore")
    elif not isinstance(text, str):
      raise TokenizerError(f"{self.kind} tokenizer: encode() takes str or bytes, got "
                           f"{type(text).__name__}")
    return np.asarray(self._encode(str(text)), np.int32) + self.n_reserved_ids

  def decode(self, ids: Sequence[int] | np.ndarray) -> str:
    """The text of `ids`, stopping at the first EOS; pad, reserved and padding ids are skipped."""
    ids = np.asarray(ids).astype(np.int64).reshape(-1)
    if self.eos_id is not None and self.eos_id != self.pad_id:
      hits = np.flatnonzero(ids == self.eos_id)
      if hits.size:
        ids = ids[: hits[0]]
    keep = (ids >= self.n_reserved_ids) & (ids < self.n_ids) & (ids != self.pad_id)
    return self._decode((ids[keep] - self.n_reserved_ids).tolist())

  def with_reserved_ids(self, n: int) -> Tokenizer:
    """A copy whose ids are shifted up by `n` more (Trax's `n_reserved_ids` argument)."""
    config = self.config()
    config["n_reserved_ids"] = self.n_reserved_ids + n
    return _from_config(config, self._payload(), "<in memory>")

  # Storage.
  def config(self) -> dict[str, Any]:
    return {"format": FORMAT, "version": 1, "kind": self.kind,
            "n_reserved_ids": self.n_reserved_ids, "pad_to_multiple": self.pad_to_multiple,
            "n_ids": self.n_ids, "vocab_size": self.vocab_size}

  def _payload(self) -> bytes | None:
    return None

  def save(self, directory: str | os.PathLike) -> str:
    """Writes `tokenizer.json` (and `spm.model` for SentencePiece) into `directory`; returns the
    path of `tokenizer.json`. Written to a temporary name first, so a crash leaves no half file.
    """
    os.makedirs(directory, exist_ok=True)
    config = self.config()
    payload = self._payload()
    if payload is not None:
      config["model_file"] = SPM_FILE
      config["model_sha256"] = hashlib.sha256(payload).hexdigest()
      _atomic_write(os.path.join(directory, SPM_FILE), payload)
    path = os.path.join(directory, TOKENIZER_FILE)
    _atomic_write(path, (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode())
    return path

  def __repr__(self) -> str:
    return f"{type(self).__name__}(n_ids={self.n_ids}, vocab_size={self.vocab_size})"


def _atomic_write(path: str, data: bytes) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


class ByteTokenizer(Tokenizer):
  """UTF-8 bytes, one id per byte (256 ids): declax's byte LMs and Trax's `vocab_type='char'`.

  Id 0 (the NUL byte, which never occurs in text) pads; `decode` drops it and replaces invalid
  UTF-8. With `n_reserved_ids >= 2`, id 1 is EOS (Trax's habit: 0 pad, 1 EOS).

  >>> ByteTokenizer().encode('hé').tolist()
  [104, 195, 169]
  """

  kind = "bytes"
  _n_base_ids = 256

  @property
  def pad_id(self) -> int:
    return 0

  @property
  def eos_id(self) -> int | None:
    return 1 if self.n_reserved_ids >= 2 else None

  def _encode(self, text: str) -> list[int]:
    return list(text.encode("utf-8"))

  def _decode(self, ids: list[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


class CharTokenizer(Tokenizer):
  """One id per Unicode character of an alphabet learned from texts.

  Ids: 0 pad, 1 EOS, 2 unknown character, then the alphabet (most frequent first).

  >>> tok = CharTokenizer.train(['abba', 'cab'])
  >>> tok.decode(tok.encode('abc')), tok.n_ids
  ('abc', 6)
  """

  kind = "char"
  _base_pad_id, _base_eos_id = PAD_ID, EOS_ID

  def __init__(self, chars: str, n_reserved_ids: int = 0, pad_to_multiple: int = PAD_MULTIPLE):
    super().__init__(n_reserved_ids, pad_to_multiple)
    if len(set(chars)) != len(chars):
      raise TokenizerError("CharTokenizer: the alphabet has repeated characters")
    self.chars = chars
    self._index = {c: i + 3 for i, c in enumerate(chars)}

  @property
  def _n_base_ids(self) -> int:  # type: ignore[override]
    return len(self.chars) + 3

  @classmethod
  def train(cls, texts: Iterable[str], max_chars: int | None = None, min_count: int = 1,
            **kwargs: Any) -> CharTokenizer:
    """The characters of `texts` seen at least `min_count` times (the `max_chars` most frequent)."""
    counts: Counter[str] = Counter()
    for text in texts:
      counts.update(text)
    ranked = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
    return cls("".join(ranked[:max_chars]), **kwargs)

  def _encode(self, text: str) -> list[int]:
    return [self._index.get(c, UNK_ID) for c in text]

  def _decode(self, ids: list[int]) -> str:
    return "".join("\ufffd" if i < 3 else self.chars[i - 3] for i in ids)

  def config(self) -> dict[str, Any]:
    return {**super().config(), "chars": self.chars}


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model (unigram or BPE), trained here (`train`) or loaded from a `.model`.

  Models trained by declax use ids 0 pad, 1 EOS, 2 unknown and no BOS (T5's layout), identity
  normalisation and byte fallback, so any text (Python source included) round-trips exactly.
  """

  kind = "sentencepiece"

  def __init__(self, model_proto: bytes, n_reserved_ids: int = 0,
               pad_to_multiple: int = PAD_MULTIPLE, *, source: str = "<in memory>"):
    super().__init__(n_reserved_ids, pad_to_multiple)
    import sentencepiece as spm

    self.model_proto = bytes(model_proto)
    self.source = source
    try:
      self.processor = spm.SentencePieceProcessor(model_proto=self.model_proto)
    except (RuntimeError, OSError, TypeError) as e:
      raise TokenizerError(
          f"{source} is not a valid SentencePiece model ({str(e).strip() or type(e).__name__}); "
          "the file is corrupt or of another kind: train it again "
          "(SentencePieceTokenizer.train) or copy it from the prepared dataset") from None
    self.fingerprint = hashlib.sha256(self.model_proto).hexdigest()[:12]
    self._n_base_ids = self.processor.get_piece_size()
    self._base_pad_id = self.processor.pad_id()
    self._base_eos_id = self.processor.eos_id()

  @classmethod
  def from_file(cls, path: str | os.PathLike, **kwargs: Any) -> SentencePieceTokenizer:
    """Loads a SentencePiece `.model` file (a `TokenizerError` naming it if it is corrupt)."""
    return cls(_read_bytes(path), source=str(path), **kwargs)

  @classmethod
  def train(
      cls, texts: Iterable[str], vocab_size: int = 8000, *, model_type: str = "unigram",
      normalization: str = "identity", byte_fallback: bool = True,
      character_coverage: float = 0.9995, max_sentences: int = 1_000_000,
      n_reserved_ids: int = 0, pad_to_multiple: int = PAD_MULTIPLE, **options: Any,
  ) -> SentencePieceTokenizer:  # fmt: skip
    """Trains a model on `texts` (an iterable of strings; each is one SentencePiece "sentence").

    **Arguments**
    - `vocab_size`: pieces to learn (ids 0-2 are pad/EOS/unknown); the model's size is this
      rounded up to `pad_to_multiple`. Too large for the corpus: SentencePiece stops earlier.
    - `model_type`: `'unigram'` or `'bpe'`.
    - `normalization`: `'identity'` keeps text as is (exact round trip), `'nmt_nfkc'` is
      SentencePiece's default; whitespace is never collapsed and no dummy prefix is added.
    - `byte_fallback`: unseen characters become UTF-8 byte pieces instead of "unknown"; with
      it, the rarest characters (beyond `character_coverage` of the text) are bytes too.
    - `max_sentences`: a random sample of at most this many texts is used.
    - `**options`: any other `spm.SentencePieceTrainer` option (e.g. `user_defined_symbols`).
    """
    import sentencepiece as spm

    if model_type not in ("unigram", "bpe"):
      raise TokenizerError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
    texts = (t for t in texts if t)  # SentencePiece rejects empty sentences
    writer = io.BytesIO()
    args = dict(
        sentence_iterator=iter(texts), model_writer=writer, vocab_size=vocab_size,
        model_type=model_type, normalization_rule_name=normalization,
        remove_extra_whitespaces=False, add_dummy_prefix=False, byte_fallback=byte_fallback,
        allow_whitespace_only_pieces=True, split_digits=False,
        character_coverage=character_coverage,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, hard_vocab_limit=False,
        input_sentence_size=max_sentences, shuffle_input_sentence=True,
        max_sentence_length=1 << 16, seed_sentencepiece_size=1_000_000, minloglevel=2,
        num_threads=1,  # deterministic, and the 2-core CI box is shared
    )  # fmt: skip
    args.update(options)
    try:
      spm.SentencePieceTrainer.train(**args)
    except RuntimeError as e:
      raise TokenizerError(f"SentencePiece training failed: {e}") from None
    return cls(writer.getvalue(), n_reserved_ids, pad_to_multiple)

  def __repr__(self) -> str:  # the model's hash tells pipelines with other models apart
    return (f"SentencePieceTokenizer(n_ids={self.n_ids}, vocab_size={self.vocab_size}, "
            f"sha256={self.fingerprint})")

  def _encode(self, text: str) -> list[int]:
    return self.processor.encode(text)

  def _decode(self, ids: list[int]) -> str:
    return self.processor.decode(ids)

  def _payload(self) -> bytes:
    return self.model_proto

  def config(self) -> dict[str, Any]:
    spec = self.processor  # model facts, for readers of tokenizer.json
    return {**super().config(), "n_pieces": spec.get_piece_size()}


def _read_bytes(path: str | os.PathLike) -> bytes:
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    raise TokenizerError(f"tokenizer file {os.fspath(path)} does not exist") from None
  except OSError as e:
    raise TokenizerError(f"cannot read tokenizer file {os.fspath(path)}: {e}") from None


def _from_config(config: dict[str, Any], payload: bytes | None, source: str) -> Tokenizer:
  kind = config.get("kind")
  common = {"n_reserved_ids": int(config.get("n_reserved_ids", 0)),
            "pad_to_multiple": int(config.get("pad_to_multiple", PAD_MULTIPLE))}
  if kind == "bytes":
    return ByteTokenizer(**common)
  if kind == "char":
    return CharTokenizer(config["chars"], **common)
  if kind == "sentencepiece":
    return SentencePieceTokenizer(payload or b"", source=source, **common)
  raise TokenizerError(f"{source}: unknown tokenizer kind {kind!r} (bytes, char, sentencepiece)")


def load(path: str | os.PathLike) -> Tokenizer:
  """The tokenizer saved in `path`: a directory holding `tokenizer.json`, that file itself, or
  a bare SentencePiece `.model` file.

  >>> tok = load('/tmp/run')          # what ByteTokenizer().save('/tmp/run') wrote
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    path = os.path.join(path, TOKENIZER_FILE)
    if not os.path.exists(path):
      raise TokenizerError(
          f"no tokenizer in {os.path.dirname(path)} (no {TOKENIZER_FILE}); save one there with "
          "tokenizer.save(directory), e.g. from the prepared dataset's directory")
  raw = _read_bytes(path)
  if not path.endswith(".json"):
    return SentencePieceTokenizer(raw, source=path)
  try:
    config = json.loads(raw.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise TokenizerError(f"{path} is not a declax tokenizer file (invalid JSON: {e})") from None
  if not isinstance(config, dict) or config.get("format") != FORMAT:
    raise TokenizerError(f"{path} is not a declax tokenizer file (no \"format\": \"{FORMAT}\")")
  payload = None
  if config.get("model_file"):
    model_path = os.path.join(os.path.dirname(path), config["model_file"])
    payload = _read_bytes(model_path)
    expected = config.get("model_sha256")
    if expected and hashlib.sha256(payload).hexdigest() != expected:
      raise TokenizerError(
          f"{model_path} does not match {path} (sha256 differs): the model file was replaced or "
          "corrupted; copy both files from the same place")
    return _from_config(config, payload, model_path)
  return _from_config(config, payload, path)


def copy_tokenizer(src: str | os.PathLike, dst_dir: str | os.PathLike) -> str:
  """Copies the tokenizer stored in `src` (see `load`) into `dst_dir` (e.g. a work directory),
  checking it loads first; returns the new `tokenizer.json` path."""
  return load(src).save(dst_dir)
