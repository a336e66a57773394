"""Decoding a trained work directory's model through its own tokenizer, whatever the vocabulary.

A run that trained on tokenized text keeps its tokenizer in the work directory
(`tokenizer.json`, + `spm.model` for SentencePiece; `declax.data.tokenizers`). A work directory
without one is a byte-level run (vocabulary 256, byte 0 ends a file in `declax_pysrc`). A
language model continues the prompt by sampling; an encoder-decoder translates it by beam search.
`declax.training.from_config.sample_from_workdir` and `scripts/sample.py` call `decode_prompt`.

```python
from declax.training.from_config import sample_from_workdir
print(sample_from_workdir('/tmp/declax/translate_de', 'File not found')[0])
```
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from declax.data import tokenizers
from declax.errors import DeclaxError

__all__ = ["VocabularyMismatchError", "decode_prompt", "model_vocab_size", "workdir_tokenizer"]


class VocabularyMismatchError(DeclaxError, ValueError):
  """The tokenizer's vocabulary size differs from the model's (the checkpoint's)."""


def workdir_tokenizer(workdir: str | os.PathLike) -> tokenizers.Tokenizer:
  """The work directory's tokenizer; bytes when it has none (runs from before tokenizers)."""
  if os.path.exists(os.path.join(os.fspath(workdir), tokenizers.TOKENIZER_FILE)):
    return tokenizers.load(workdir)
  return tokenizers.ByteTokenizer()


def model_vocab_size(model: Any, variables: Any) -> int:
  """The size of the model's output vocabulary: the last axis of its logits, from the
  checkpoint's parameters (`jax.eval_shape`; nothing is computed)."""
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  inputs = tokens if model.n_in == 1 else (tokens,) * model.n_in
  out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, inputs)
  logits = out[0] if isinstance(out, (tuple, list)) else out
  return int(logits.shape[-1])


def check_vocabulary(tokenizer: tokenizers.Tokenizer, vocab: int, where: str) -> None:
  """`VocabularyMismatchError` unless the tokenizer's ids fit the model's vocabulary."""
  if tokenizer.vocab_size != vocab:
    raise VocabularyMismatchError(
        f"the tokenizer in {where} has vocab_size {tokenizer.vocab_size} ({tokenizer!r}), but "
        f"the checkpoint's model has a vocabulary of {vocab}: the tokenizer does not belong to "
        "this checkpoint; copy the tokenizer.json (+ spm.model) of the run that trained it")


def decode_prompt(model: Any, variables: Any, tokenizer: tokenizers.Tokenizer, prompt: str, *,
                  max_length: int = 200, temperature: float = 0.8, top_k: int | None = None,
                  num_samples: int = 1, seed: int = 0, eos_id: int | None | str = "auto",
                  beam_size: int = 4) -> list[str]:
  """Continuations of `prompt` (a language model: `num_samples` samples, prompt included) or
  its translations (an encoder-decoder: the `num_samples` best beams of `beam_size`).

  `eos_id='auto'`: the tokenizer's EOS, or byte 0 for byte-level models; None never stops.
  Prompt plus `max_length` beyond the model's context raise `ContextLengthError`.
  """
  from declax.decoding import ContextLengthError, autoregressive_sample, beam_search

  if eos_id == "auto":
    eos_id = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.pad_id
  ids = tokenizer.encode(prompt)
  if model.n_in == 2:
    source = np.append(ids, tokenizer.eos_id if tokenizer.eos_id is not None else [])
    source = source.astype(np.int32)[None]
    max_len = _encoder_context(model, variables)
    if max_len is not None and source.shape[1] > max_len:
      raise ContextLengthError(f"the prompt is {source.shape[1]} tokens (EOS included), "
                               f"beyond the model's context (max_len) of {max_len}")
    beams = max(beam_size, num_samples)
    seqs, _ = beam_search(model, variables, source, max_length=max_length, beam_size=beams,
                          eos_id=eos_id)
    return [tokenizer.decode(row) for row in np.asarray(seqs[0, :num_samples])]
  prefix = np.tile(ids[None], (num_samples, 1))
  tokens = autoregressive_sample(model, variables, prefix, max_length, temperature=temperature,
                                 top_k=top_k, rng=jax.random.PRNGKey(seed), eos_id=eos_id)
  texts = []
  for row in np.asarray(tokens):
    if eos_id is not None and (row == eos_id).any():
      row = row[: int(np.argmax(row == eos_id))]
    texts.append(prompt + tokenizer.decode(row))
  return texts


def _encoder_context(model: Any, variables: Any) -> int | None:
  """The encoder's longest input (its positional encoding's `max_len`), if it has one."""
  from declax.decoding_cache import context_limit

  del variables
  return context_limit(model, 1, jnp.zeros((1, 1), jnp.int32))
