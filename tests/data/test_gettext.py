"""`declax_gettext_translations` on small .mo catalogs written by the tests (not the system's)."""

import hashlib
import os

import polib
import pytest
import tensorflow_datasets as tfds

import declax
from declax.data.builders import gettext as gt
from declax.data.offline import DatasetUnavailableError
from declax.data.sources import prepare
from tests.reliability.catalogue import CATALOGUE


def _write_mo(path: str, entries: list[dict], plural_forms: str = "nplurals=2; plural=(n != 1);"):
  po = polib.POFile()
  po.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Plural-Forms": plural_forms}
  for e in entries:
    po.append(polib.POEntry(**e))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  po.save_as_mofile(path)


def _messages(n: int) -> list[dict]:
  return [{"msgid": f"message number {i}", "msgstr": f"Nachricht Nummer {i}"} for i in range(n)]


@pytest.fixture(scope="module")
def locale_dir(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp("locale"))
  de = os.path.join(root, "de", "LC_MESSAGES")
  _write_mo(os.path.join(de, "a.mo"), _messages(300) + [
      {"msgid": "Open", "msgstr": "Öffnen"},
      {"msgid": "Close", "msgstr": "Schließen"},
      {"msgid": "%d file", "msgid_plural": "%d files",
       "msgstr_plural": {0: "%d Datei", 1: "%d Dateien"}},
      {"msgid": "Untranslated", "msgstr": ""},
  ])
  _write_mo(os.path.join(de, "b.mo"), [
      {"msgid": "Open", "msgstr": "Aufmachen"},           # 1 vote each in a and b: a wins (first)
      {"msgid": "Close", "msgstr": "Zumachen"},
      {"msgid": "Close", "msgstr": "Zumachen", "msgctxt": "window"},  # context dropped: 2 votes
  ])
  _write_mo(os.path.join(root, "fr", "LC_MESSAGES", "a.mo"),
            [{"msgid": "Open", "msgstr": "Ouvrir"}])
  os.makedirs(os.path.join(root, "sv", "LC_MESSAGES"))   # empty catalog directory
  return root


def test_split_rule_is_exactly_sha1_mod_100():
  for text in ["", "Open", "message number 7", "Ünïcödé"]:
    bucket = int(hashlib.sha1(text.encode()).hexdigest(), 16) % 100
    want = "train" if bucket < 90 else "validation" if bucket < 95 else "test"
    assert gt.split_of(text) == want


def test_pairs_dedupe_plurals_and_contexts(locale_dir):
  pairs, counts = gt.collect_pairs(gt.catalog_paths(locale_dir, "de"))
  assert pairs["Open"] == "Öffnen"           # tie (1-1): the first catalog in sorted order
  assert pairs["Close"] == "Zumachen"        # 2 votes (one under a msgctxt) beat 1
  assert pairs["%d file"] == "%d Datei" and pairs["%d files"] == "%d Dateien"
  assert "Untranslated" not in pairs and "" not in pairs
  assert len(pairs) == 300 + 4
  assert counts == {"a.mo": 304, "b.mo": 3}


def test_plural_pair_follows_the_catalogs_plural_rule(tmp_path):
  # A rule under which a count of two takes form 2 (as in e.g. Slovenian's dual).
  path = str(tmp_path / "x" / "LC_MESSAGES" / "a.mo")
  _write_mo(path, [{"msgid": "%d cat", "msgid_plural": "%d cats",
                    "msgstr_plural": {0: "one", 1: "other", 2: "two"}}],
            plural_forms="nplurals=3; plural=(n==1 ? 0 : n==2 ? 2 : 1);")
  assert dict(gt.catalog_pairs(path)) == {"%d cat": "one", "%d cats": "two"}


def test_builder_splits_metadata_and_features(locale_dir, tmp_path):
  _, builder = prepare("declax_gettext_translations/de", str(tmp_path), locale_dir=locale_dir,
                       min_pairs=10)
  pairs, _ = gt.collect_pairs(gt.catalog_paths(locale_dir, "de"))
  seen = {}
  for split in ("train", "validation", "test"):
    source = tfds.data_source("declax_gettext_translations/de", data_dir=str(tmp_path), split=split)
    for ex in source:
      en, de = ex["en"].decode(), ex["de"].decode()
      assert gt.split_of(en) == split and en not in seen
      seen[en] = de
  assert seen == pairs
  meta = builder.info.metadata
  assert meta["catalogs"] == {"a.mo": 304, "b.mo": 3} and meta["n_pairs"] == 304
  assert meta["corpus_sha256"] == gt.corpus_hash(pairs) and meta["locale_dir"] == locale_dir
  assert builder.info.supervised_keys == ("en", "de")
  # The metadata survives a reload from the data dir.
  again = tfds.builder_from_directory(builder.data_dir)
  assert again.info.metadata["corpus_sha256"] == meta["corpus_sha256"]


def test_locale_dir_from_the_environment(locale_dir, monkeypatch):
  monkeypatch.setenv(gt.LOCALE_DIR_ENV, locale_dir)
  builder = gt.DeclaxGettextTranslations(data_dir="/nonexistent", language="fr")
  assert builder.locale_dir == locale_dir


def test_too_few_pairs_names_the_catalog_directory(locale_dir, tmp_path):
  with pytest.raises(DatasetUnavailableError, match=r"fr/LC_MESSAGES.*min_pairs=1000") as e:
    prepare("declax_gettext_translations/fr", str(tmp_path), locale_dir=locale_dir)
  assert CATALOGUE["TX11"] in str(e.value)


def test_unknown_language_lists_the_available_ones(locale_dir, tmp_path):
  with pytest.raises(gt.UnknownLanguageError, match=r"'dee'.*did you mean de\?.*de, fr") as e:
    prepare("declax_gettext_translations", str(tmp_path), language="dee", locale_dir=locale_dir)
  assert CATALOGUE["TX9"] in str(e.value)
  assert isinstance(e.value, declax.DeclaxError) and isinstance(e.value, ValueError)


def test_empty_or_missing_catalog_directory(locale_dir, tmp_path):
  with pytest.raises(gt.CatalogDirectoryError, match=r"sv/LC_MESSAGES holds no \.mo files") as e:
    prepare("declax_gettext_translations/sv", str(tmp_path), locale_dir=locale_dir)
  assert CATALOGUE["TX10"] in str(e.value)
  with pytest.raises(gt.CatalogDirectoryError, match="does not exist"):
    gt.available_languages(str(tmp_path / "nowhere"))


def test_unreadable_catalog_is_named(tmp_path):
  path = tmp_path / "de" / "LC_MESSAGES" / "broken.mo"
  path.parent.mkdir(parents=True)
  path.write_bytes(b"this is not a mo file at all")
  with pytest.raises(gt.CatalogDirectoryError, match="broken.mo"):
    gt.collect_pairs(gt.catalog_paths(str(tmp_path), "de"))
