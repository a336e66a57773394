"""`declax_gettext_translations`: English -> X sentence pairs from the system's gettext catalogs.

Every package that is translated installs compiled message catalogs,
`<locale_dir>/<lang>/LC_MESSAGES/<domain>.mo`: real human translations of its user interface
messages. This builder reads all of a language's catalogs with `polib` and makes one parallel
corpus of them, split by a hash of the English text so that the test set does not move when the
set of installed packages changes.

Rules (see docs/text.md, "The gettext corpus"):
- Split: `int(sha1(english.encode()).hexdigest(), 16) % 100` < 90 train, 90-94 validation,
  >= 95 test.
- Duplicates: an English message seen more than once (in several catalogs, or with several
  contexts) appears once; its translation is the one given most often, ties broken by the
  catalog that comes first in sorted order (then the smaller translation string).
- Plurals: the singular pair `(msgid, msgstr[0])` and the plural pair `(msgid_plural,
  msgstr[plural(2)])`, where `plural` is the catalog's own `Plural-Forms` rule (so the plural
  pair is the translation for a count of two).
- Contexts (`msgctxt`) are dropped: the English text alone is the source sentence.
- Skipped: the header (empty msgid) and untranslated or empty messages.

```python
import declax.data as dd
dd.prepare('declax_gettext_translations/de', '/tmp/tfds')
```
"""

from __future__ import annotations

import collections
import dataclasses
import gettext
import hashlib
import os
from collections.abc import Iterable, Iterator

import polib
import tensorflow_datasets as tfds

from declax.data.offline import DatasetUnavailableError
from declax.errors import DeclaxError, did_you_mean

DEFAULT_LOCALE_DIR = "/usr/share/locale"
LOCALE_DIR_ENV = "DECLAX_LOCALE_DIR"  # overrides the default (e.g. tests' own .mo files)
MIN_PAIRS = 1000
LANGUAGES = ("de", "fr", "es", "sv", "uk", "ru", "ja")  # predefined configs; any other code works

__all__ = ["CatalogDirectoryError", "DeclaxGettextTranslations", "GettextConfig",
           "UnknownLanguageError", "available_languages", "collect_pairs", "split_of"]


class UnknownLanguageError(DeclaxError, ValueError):
  """The language has no `LC_MESSAGES/*.mo` catalogs under the locale directory."""


class CatalogDirectoryError(DeclaxError, OSError):
  """The locale or catalog directory is missing, empty, or holds catalogs that cannot be read."""


def locale_dir_default() -> str:
  """`$DECLAX_LOCALE_DIR` if set, else `/usr/share/locale`."""
  return os.environ.get(LOCALE_DIR_ENV) or DEFAULT_LOCALE_DIR


def split_of(english: str) -> str:
  """The split of an English message: 90% train, 5% validation, 5% test, by its SHA-1.

  >>> split_of('File not found')  in ('train', 'validation', 'test')
  True
  """
  bucket = int(hashlib.sha1(english.encode()).hexdigest(), 16) % 100
  return "train" if bucket < 90 else "validation" if bucket < 95 else "test"


def _catalog_dir(locale_dir: str, language: str) -> str:
  return os.path.join(locale_dir, language, "LC_MESSAGES")


def available_languages(locale_dir: str) -> list[str]:
  """Language codes under `locale_dir` that have at least one `.mo` catalog, sorted."""
  if not os.path.isdir(locale_dir):
    raise CatalogDirectoryError(
        f"locale directory {locale_dir} does not exist; install translated packages (e.g. "
        f"apt-get install language-pack-de) or set ${LOCALE_DIR_ENV} / locale_dir=")
  found = []
  for lang in sorted(os.listdir(locale_dir)):
    d = _catalog_dir(locale_dir, lang)
    if os.path.isdir(d) and any(f.endswith(".mo") for f in os.listdir(d)):
      found.append(lang)
  return found


def catalog_paths(locale_dir: str, language: str) -> list[str]:
  """The language's `.mo` files, sorted; clear errors for an unknown code or an empty directory."""
  d = _catalog_dir(locale_dir, language)
  if not os.path.isdir(d):
    known = available_languages(locale_dir)
    raise UnknownLanguageError(
        f"no gettext catalogs for language {language!r}: {d} does not exist"
        f"{did_you_mean(language, known)} Languages with catalogs under {locale_dir}: "
        f"{', '.join(known) or 'none'}")
  try:
    names = sorted(f for f in os.listdir(d) if f.endswith(".mo"))
  except OSError as e:
    raise CatalogDirectoryError(f"cannot list the catalog directory {d}: {e}") from e
  if not names:
    raise CatalogDirectoryError(
        f"the catalog directory {d} holds no .mo files; install translated packages for "
        f"{language!r} or pick another language ({', '.join(available_languages(locale_dir))})")
  return [os.path.join(d, f) for f in names]


def _plural_index(catalog: polib.MOFile) -> int:
  """Which `msgstr[i]` translates a count of two, by the catalog's `Plural-Forms` rule."""
  forms = catalog.metadata.get("Plural-Forms", "")
  _, _, rule = forms.partition("plural=")
  rule = rule.strip().rstrip(";").strip()
  try:
    return int(gettext.c2py(rule)(2)) if rule else 1
  except (ValueError, SyntaxError):
    return 1


def catalog_pairs(path: str) -> Iterator[tuple[str, str]]:
  """`(english, translation)` pairs of one `.mo` file (rules in the module docstring)."""
  try:
    catalog = polib.mofile(path)
  except (OSError, ValueError) as e:
    raise CatalogDirectoryError(f"cannot read the gettext catalog {path}: {e}; remove or "
                                "reinstall it") from e
  plural = None
  for entry in catalog:
    if not entry.msgid:
      continue  # the header
    if entry.msgid_plural:
      forms = entry.msgstr_plural
      if forms.get(0):
        yield entry.msgid, forms[0]
      plural = _plural_index(catalog) if plural is None else plural
      if forms.get(plural):
        yield entry.msgid_plural, forms[plural]
    elif entry.msgstr:
      yield entry.msgid, entry.msgstr


def collect_pairs(paths: Iterable[str]) -> tuple[dict[str, str], dict[str, int]]:
  """Deduplicated `{english: translation}` over catalogs, and the pair count of each catalog.

  The translation of an English message is its most frequent one; ties go to the catalog first
  in the order of `paths` (sorted by `catalog_paths`), then to the smaller string.
  """
  votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  first_seen: dict[tuple[str, str], int] = {}
  counts: dict[str, int] = {}
  for i, path in enumerate(paths):
    n = 0
    for english, translation in catalog_pairs(path):
      votes[english][translation] += 1
      first_seen.setdefault((english, translation), i)
      n += 1
    counts[os.path.basename(path)] = n
  pairs = {}
  for english, counter in votes.items():
    best = min(counter, key=lambda t: (-counter[t], first_seen[english, t], t))  # noqa: B023
    pairs[english] = best
  return pairs, counts


def corpus_hash(pairs: dict[str, str]) -> str:
  """SHA-256 of the sorted pairs: equal hashes mean an identical corpus."""
  h = hashlib.sha256()
  for english in sorted(pairs):
    h.update(english.encode() + b"\0" + pairs[english].encode() + b"\0")
  return h.hexdigest()


@dataclasses.dataclass(eq=False)
class GettextConfig(tfds.core.BuilderConfig):
  """`language`: the gettext language code, i.e. the directory name under the locale dir."""

  language: str = "de"


def _config(language: str) -> GettextConfig:
  return GettextConfig(name=language, language=language,
                       description=f"English -> {language} gettext messages")


class DeclaxGettextTranslations(tfds.core.GeneratorBasedBuilder):
  """English -> X pairs from `<locale_dir>/<X>/LC_MESSAGES/*.mo`; the language is the config.

  Features: `en` (the English message), `<language>` (its translation), both `Text`;
  `supervised_keys = ('en', language)`. Splits `train`, `validation`, `test` by `split_of`.
  The catalogs used (with their pair counts), the locale directory and `corpus_sha256` are
  stored in `info.metadata`. Arguments: `language=` (any code with catalogs; predefined configs
  de (default), fr, es, sv, uk, ru, ja), `locale_dir=` (default `$DECLAX_LOCALE_DIR` or
  `/usr/share/locale`), `min_pairs=` (fewer -> `DatasetUnavailableError`).

  >>> DeclaxGettextTranslations(data_dir='/tmp/tfds', language='fr').download_and_prepare()
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: sha1(english) % 100 split 90/5/5."}
  BUILDER_CONFIGS = [_config(lang) for lang in LANGUAGES]

  def __init__(self, *, language: str | None = None, locale_dir: str | None = None,
               min_pairs: int = MIN_PAIRS, **kwargs):
    if language is not None:
      if kwargs.get("config") is not None:
        raise ValueError("declax_gettext_translations: pass either language or config, not both")
      kwargs["config"] = language
    if isinstance(kwargs.get("config"), str):  # any language code, not only the predefined ones
      kwargs["config"] = self.builder_configs.get(kwargs["config"]) or _config(kwargs["config"])
    if kwargs.get("config") is not None and kwargs["config"].language == "en":
      raise UnknownLanguageError("declax_gettext_translations: the source language is English; "
                                 "pick a target language such as 'de'")
    self.locale_dir = locale_dir or locale_dir_default()
    self.min_pairs = min_pairs
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    language = self.builder_config.language
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"English -> {language} messages of the installed gettext catalogs.",
        features=tfds.features.FeaturesDict({"en": tfds.features.Text(),
                                             language: tfds.features.Text()}),
        supervised_keys=("en", language),
        homepage="https://www.gnu.org/software/gettext/",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    language = self.builder_config.language
    paths = catalog_paths(self.locale_dir, language)
    pairs, counts = collect_pairs(paths)
    if len(pairs) < self.min_pairs:
      raise DatasetUnavailableError(
          f"declax_gettext_translations/{language}: only {len(pairs)} English messages with a "
          f"translation in {_catalog_dir(self.locale_dir, language)} ({len(paths)} catalogs), "
          f"fewer than min_pairs={self.min_pairs}; install more translated packages, pick "
          "another language, or lower min_pairs")
    self.info.metadata.update({
        "locale_dir": self.locale_dir, "catalogs": counts, "n_pairs": len(pairs),
        "corpus_sha256": corpus_hash(pairs),
    })
    by_split: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for english in sorted(pairs):
      by_split[split_of(english)].append(english)
    return {split: self._generate_examples(keys, pairs) for split, keys in by_split.items()}

  def _generate_examples(self, keys: list[str], pairs: dict[str, str]):
    language = self.builder_config.language
    for english in keys:
      yield hashlib.sha1(english.encode()).hexdigest(), {"en": english, language: pairs[english]}
