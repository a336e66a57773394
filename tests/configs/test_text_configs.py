"""configs/translate_gettext.py and configs/pysrc_lm_spm.py run end to end at tiny size (their own
drivers, through `train_and_evaluate`), on a small .mo corpus written here."""

import importlib.util
import json
import os

import numpy as np
import polib
import pytest

from declax.training.from_config import sample_from_workdir, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORDS = ["file", "folder", "window", "printer", "user", "network", "disk", "device"]
GERMAN = ["Datei", "Ordner", "Fenster", "Drucker", "Benutzer", "Netzwerk", "Platte", "Gerät"]


def _config(name: str):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.fixture(scope="module")
def locale_dir(tmp_path_factory) -> str:
  root = tmp_path_factory.mktemp("locale")
  po = polib.POFile()
  po.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
  for i in range(400):
    en, de = WORDS[i % 8], GERMAN[i % 8]
    po.append(polib.POEntry(msgid=f"Cannot open {en} {i}",
                            msgstr=f"{de} {i} kann nicht geöffnet werden"))
  os.makedirs(root / "de" / "LC_MESSAGES")
  po.save_as_mofile(str(root / "de" / "LC_MESSAGES" / "demo.mo"))
  return str(root)


@pytest.mark.slow
def test_translate_gettext_trains_logs_bleu_and_translates(locale_dir, tmp_path, capsys):
  config = _config("translate_gettext")
  config.model.update(d_model=32, d_ff=64, n_encoder_layers=1, n_decoder_layers=1, n_heads=2,
                      max_len=64)
  config.translate.update(data_dir=str(tmp_path / "data"), vocab_size=400,
                          builder_kwargs=dict(locale_dir=locale_dir, min_pairs=100),
                          boundaries=(16, 32), tokens_per_batch=512, shuffle_queue=32,
                          eval_batch_size=16,
                          bleu_every=3, n_bleu_examples=8, beam_size=2, decode_batch_size=8,
                          n_samples=2)
  config.train.update(steps=4, eval_every=4, checkpoint_every=4, log_every=1)
  workdir = tmp_path / "run"
  loop = train_and_evaluate(config, workdir, print_summary=False)
  assert loop.step == 4 and all(np.isfinite(loss) for _, loss in loop.losses)
  with open(workdir / "metrics.jsonl") as f:
    bleus = [r for r in map(json.loads, f) if "eval/bleu" in r]
  assert [r["step"] for r in bleus] == [3, 4]
  assert all(0 <= r["eval/bleu"] <= 100 and r["eval/wall_s"] > 0 for r in bleus)
  assert "en:  'Cannot open" in capsys.readouterr().out
  assert os.path.exists(workdir / "spm.model") and os.path.exists(workdir / "tokenizer.json")
  (translation,) = sample_from_workdir(workdir, "Cannot open file 7", max_length=12)
  assert isinstance(translation, str)


@pytest.mark.slow
def test_pysrc_lm_spm_reports_bits_per_byte(tmp_path):
  config = _config("pysrc_lm_spm")
  config.model.update(d_model=16, d_ff=32, n_layers=1, n_heads=2, max_len=32)
  config.spm.update(vocab_size=400, max_lines=2000, n_eval_windows=16, eval_batch_size=8)
  config.train.update(steps=2, batch_size=8, eval_every=2, checkpoint_every=2, log_every=1)
  loop = train_and_evaluate(config, tmp_path, print_summary=False)
  assert loop.step == 2
  with open(tmp_path / "metrics.jsonl") as f:
    bpb = [r["eval/bits_per_byte"] for r in map(json.loads, f) if "eval/bits_per_byte" in r]
  assert len(bpb) == 1 and 0 < bpb[0] < 16
  text = sample_from_workdir(tmp_path, "def ", max_length=8, temperature=0.0)[0]
  assert text.startswith("def ")
