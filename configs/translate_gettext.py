"""English -> German translation on the system's gettext catalogs: an encoder-decoder Transformer
on one SentencePiece vocabulary, length-bucketed batches, BLEU of beam-search translations of the
test split logged as `eval/bleu` against wall time, a few sample translations at the end.

    declax-train --config configs/translate_gettext.py --workdir /tmp/declax/translate_de

Other languages: `--config.translate.dataset=declax_gettext_translations/fr`. A quick look:
`--config.train.steps=300 --config.translate.bleu_every=300 --config.translate.n_bleu_examples=200`.
The run is driven by `declax.translation_driver.train_translation` (`config.experiment`).
"""

import ml_collections
from ml_collections.config_dict import placeholder

from declax.training import default_config


def get_config() -> ml_collections.ConfigDict:
  config = default_config.get_config()  # every key and its default
  config.experiment = "declax.translation_driver:train_translation"

  # input_vocab_size None: the SentencePiece vocabulary's size (shared by both languages).
  config.model = dict(name="Transformer", input_vocab_size=placeholder(int), d_model=128,
                      d_ff=512, n_encoder_layers=2, n_decoder_layers=2, n_heads=4, max_len=256,
                      dropout=0.1)
  config.data.update(name="declax_gettext_translations/de")  # what translate.dataset reads

  config.translate = dict(
      dataset="declax_gettext_translations/de",
      data_dir=placeholder(str),       # None: declax's default data dir
      builder_kwargs={},               # e.g. locale_dir=..., min_pairs=... (the builder's)
      vocab_size=4000, model_type="unigram",  # trained on the training split's both sides
      boundaries=(10, 16, 24, 40, 64),  # token lengths (EOS included); longer pairs skipped
      tokens_per_batch=2048,           # padded tokens per side per batch, in every bucket
      shuffle_queue=2048,              # Trax's Shuffle(queue_size) before bucketing
      eval_batch_size=128,             # validation token metrics
      bleu_every=1500, n_bleu_examples=placeholder(int),  # None: the whole test split
      beam_size=4, alpha=0.6, decode_batch_size=128,
      n_samples=5,                     # test translations printed at the end
  )

  config.optimizer.update(name="adam", clip_norm=1.0, kwargs=dict(b1=0.9, b2=0.98))
  config.schedule.update(name="warmup_rsqrt", learning_rate=2e-3, warmup_steps=300)
  config.train.update(
      steps=6000, batch_size=512,      # batch_size: rows of the shortest bucket (informational)
      eval_every=1500, checkpoint_every=1500, log_every=100, keep_checkpoints=2, seed=0,
      loss="WeightedCategoryCrossEntropy",
      metrics=("WeightedCategoryCrossEntropy", "WeightedCategoryAccuracy"),
      metric_names=("loss", "accuracy"))
  config.sample = dict(prompt="File not found", max_length=40)  # translated at the end
  return config
