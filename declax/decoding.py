"""Autoregressive decoding with the models' `'predict'` mode: sampling and beam search.

In `'predict'` mode a sequence model keeps what it has seen in the `'cache'` collection (KV caches
and positions in Transformers, states in RNNs, the encoder's output in the encoder-decoder
`Transformer`) and takes one new token per call. These functions start from an empty cache (a
fresh `'predict'`-mode init), feed the start token and the prefix in one call, then generate one
token per step; the whole loop is one jitted `jax.lax.while_loop`. Nothing here depends on what
the cache holds: beam search runs the first call once per input, repeats its cache once per
beam, and reorders every cache leaf along its batch axis at each step.

Trax's arguments are accepted under Trax's names (`inputs`, `batch_size`, `temperature`,
`start_id`, `eos_id`, `max_length`, `accelerate`, `eval_mode`, `eval_min_length`, `n_beams`,
`length_penalty`); `autoregressive_sample_stream` is Trax's generator. Unlike Trax, the weights
are passed as `variables` (Linen), and a decode that would run past the model's context raises
`ContextLengthError` instead of being cut.

```python
model = TransformerLM(vocab_size=256, ...)                  # any mode: the train model is fine
tokens = autoregressive_sample(model, {'params': params}, prefix=jnp.array([[100, 101]]),
                               max_length=64, temperature=0.8, top_k=40,
                               rng=jax.random.key(0), eos_id=None)     # (1, 64) int32
best, scores = beam_search(transformer, {'params': p}, inputs=source, max_length=32, beam_size=4,
                           eos_id=1)                         # (batch, 4, 32), (batch, 4)
```

Token conventions follow Trax: decoding starts from `start_id` (0, the id `ShiftRight` pads
with), the returned tokens exclude the start token and the prefix, and after a row emits `eos_id`
the rest of it is filled with 0.

The code lives in three modules, one idea each: `declax.decoding_cache` (running the
predict-mode model: the empty cache, one step, the context check, Trax's arguments, moving
cache rows), `declax.decoding_sampling` (greedy, temperature and top-k sampling, the stream)
and `declax.decoding_beam` (beam search). This module gathers their public names.
"""

from declax.decoding_beam import beam_search
from declax.decoding_cache import ContextLengthError, init_cache
from declax.decoding_sampling import (
    autoregressive_sample,
    autoregressive_sample_stream,
    sample_logits,
)

__all__ = ["ContextLengthError", "autoregressive_sample", "autoregressive_sample_stream",
           "beam_search", "init_cache", "sample_logits"]
