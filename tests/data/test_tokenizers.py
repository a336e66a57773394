"""declax.data.tokenizers and Trax's tokenize/detokenize/vocab_size (declax-specific behaviour)."""

import inspect
import json
import os

import numpy as np
import pytest

from declax.data import inputs_text, tokenizers
from declax.data.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    SentencePieceTokenizer,
    TokenizerError,
)
from declax.errors import DeclaxError
from tests.reliability.catalogue import CATALOGUE


@pytest.fixture(scope="module")
def source_lines():
  """~1,500 lines of real Python source (this module and the tokenizer modules)."""
  text = "".join(inspect.getsource(m) for m in (tokenizers, inputs_text, json.decoder, os))
  return text.splitlines(keepends=True)


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def spm_tokenizer(request, source_lines):
  return SentencePieceTokenizer.train(source_lines, vocab_size=800, model_type=request.param)


def test_bytes_match_todays_byte_lm():
  tok = ByteTokenizer()
  text = "def f():\n  return 'é'\n"
  ids = tok.encode(text)
  assert ids.dtype == np.int32
  np.testing.assert_array_equal(ids, np.frombuffer(text.encode(), np.uint8))
  assert tok.decode(np.concatenate([ids, [0, 0]])) == text  # 0 pads (NUL never occurs)
  assert (tok.n_ids, tok.vocab_size, tok.pad_id, tok.eos_id) == (256, 256, 0, None)


def test_reserved_ids_shift_and_round_up():
  tok = ByteTokenizer(n_reserved_ids=2)
  assert tok.encode("A").tolist() == [65 + 2]
  assert (tok.n_ids, tok.vocab_size, tok.eos_id) == (258, 384, 1)
  assert tok.decode([67, 1, 68]) == "A"  # stops at EOS


def test_chars_round_trip_and_unknown():
  tok = CharTokenizer.train(["hello wörld", "held"])
  assert tok.decode(tok.encode("hello wörld")) == "hello wörld"
  assert tok.encode("z").tolist() == [tokenizers.UNK_ID]
  assert tok.vocab_size == 128 and tok.n_ids == 3 + len(set("hello wörld"))


def test_sentencepiece_round_trips_python_source_exactly(spm_tokenizer, source_lines):
  source = "".join(source_lines[:300]) + "\tx = '漢字 ü'  \r\n\n"  # unseen chars: byte fallback
  ids = spm_tokenizer.encode(source)
  assert spm_tokenizer.decode(ids) == source
  assert len(ids) < 0.6 * len(source.encode())  # it does learn pieces
  assert spm_tokenizer.vocab_size % 128 == 0
  assert spm_tokenizer.n_ids <= spm_tokenizer.vocab_size < spm_tokenizer.n_ids + 128
  assert (spm_tokenizer.pad_id, spm_tokenizer.eos_id) == (0, 1)
  assert spm_tokenizer.encode("").size == 0


def test_padding_ids_are_never_produced_and_skipped_by_decode(spm_tokenizer, source_lines):
  ids = spm_tokenizer.encode("".join(source_lines))
  assert ids.max() < spm_tokenizer.n_ids
  pad = spm_tokenizer.vocab_size - 1
  if pad >= spm_tokenizer.n_ids:
    assert spm_tokenizer.decode([pad, *ids[:5].tolist()]) == spm_tokenizer.decode(ids[:5])


def test_save_load_and_copy_to_workdir(spm_tokenizer, tmp_path):
  data_dir, workdir = tmp_path / "prepared", tmp_path / "run"
  path = spm_tokenizer.save(data_dir)
  assert os.path.basename(path) == "tokenizer.json"
  assert (data_dir / "spm.model").exists()
  tokenizers.copy_tokenizer(data_dir, workdir)
  back = tokenizers.load(workdir)
  text = "for i in range(10):\n  print(i)\n"
  np.testing.assert_array_equal(back.encode(text), spm_tokenizer.encode(text))
  assert back.vocab_size == spm_tokenizer.vocab_size
  # Trax's API reads the same files.
  ids = next(inputs_text.tokenize(iter([text]), vocab_type="subword", vocab_dir=str(workdir),
                                  vocab_file="tokenizer.json"))
  spm_file = str(workdir / "spm.model")
  assert inputs_text.detokenize(ids, vocab_type="sentencepiece", vocab_file=spm_file) == text


def test_char_tokenizer_saved_is_read_by_vocab_type_char(tmp_path):
  CharTokenizer.train(["abc"]).save(tmp_path)
  ids = next(inputs_text.tokenize(iter(["cab"]), vocab_type="char",
                                  vocab_file=str(tmp_path / "tokenizer.json")))
  assert ids.tolist() == [5, 3, 4]
  assert inputs_text.vocab_size("char", str(tmp_path / "tokenizer.json")) == 6


def test_corrupt_sentencepiece_file_is_named(tmp_path):
  bad = tmp_path / "spm.model"
  bad.write_bytes(b"\x00garbage")
  with pytest.raises(TokenizerError, match=str(bad)) as info:
    tokenizers.load(bad)
  assert CATALOGUE["TX1"] in str(info.value)
  assert isinstance(info.value, DeclaxError) and isinstance(info.value, ValueError)
  with pytest.raises(TokenizerError, match="corrupt"):
    inputs_text.vocab_size("sentencepiece", "spm.model", str(tmp_path))


def test_replaced_model_file_is_detected(spm_tokenizer, tmp_path):
  spm_tokenizer.save(tmp_path)
  other = SentencePieceTokenizer.train(["abc abd abe\n"] * 20, vocab_size=300)
  (tmp_path / "spm.model").write_bytes(other.model_proto)
  with pytest.raises(TokenizerError, match="sha256") as info:
    tokenizers.load(tmp_path)
  assert CATALOGUE["TX2"] in str(info.value)


def test_missing_tokenizer_names_the_directory(tmp_path):
  with pytest.raises(TokenizerError, match=f"no tokenizer in {tmp_path}") as info:
    tokenizers.load(tmp_path)
  assert CATALOGUE["TX3"] in str(info.value)


def test_unknown_vocab_type_suggests():
  with pytest.raises(TokenizerError, match="did you mean sentencepiece") as info:
    inputs_text.vocab_size("sentencepeice", "x.model")
  assert CATALOGUE["TX4"] in str(info.value)


def test_trax_subword_file_needs_tensorflow(tmp_path):
  (tmp_path / "en.subword").write_text("'<pad>'\n'<EOS>'\n'the_'\n")
  with pytest.raises(TokenizerError, match="needs TensorFlow"):
    inputs_text.get_vocab("subword", "en.subword", str(tmp_path))


def test_missing_vocab_file_is_an_error():
  with pytest.raises(TokenizerError, match="needs vocab_file"):
    inputs_text.get_vocab("sentencepiece")


def test_bad_options():
  with pytest.raises(TokenizerError, match="model_type"):
    SentencePieceTokenizer.train(["a"], model_type="word2vec")
  with pytest.raises(TokenizerError, match="n_reserved_ids"):
    ByteTokenizer(n_reserved_ids=-1)
