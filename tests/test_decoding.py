"""declax.decoding: cached predict-mode steps against full forward passes, greedy/top-k/temperature
sampling, EOS handling and beam search."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax import decoding
from declax.models import MLP, RNNLM, Transformer, TransformerLM
from tests.reliability.catalogue import CATALOGUE

V = 13
TINY = dict(d_model=16, d_ff=32, n_heads=2, max_len=24, dropout=0.1)


@pytest.fixture(autouse=True)
def _fast_compiles():
  """Many small programs: skip most XLA optimizations (see tests/models/conftest.py)."""
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


def tokens(shape, seed=0):
  return jnp.asarray(np.random.RandomState(seed).randint(1, V, shape), jnp.int32)


MODELS = {
    "transformer": lambda: TransformerLM(V, n_layers=2, **TINY),
    "transformer_scan": lambda: TransformerLM(V, n_layers=2, scan_layers=True, **TINY),
    "lstm": lambda: RNNLM(V, d_model=16, n_layers=2),
    "gru": lambda: RNNLM(V, d_model=16, n_layers=1, rnn_cell="GRU"),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def lm(request):
  model = MODELS[request.param]()
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), tokens((2, 8)))
  full = jax.jit(tl.with_mode(model, "eval").apply)
  return model, variables, full


def pad_to(seq, length=16):
  """Causal models ignore what follows: one fixed length means one compiled full pass."""
  return jnp.pad(seq, ((0, 0), (0, length - seq.shape[1])))


def next_logits(full, variables, seq):
  """Logits for the token after `seq`, from one full (eval-mode) pass."""
  return full(variables, pad_to(seq))[:, seq.shape[1]]


@pytest.mark.slow
def test_cached_steps_equal_the_full_pass(lm):
  model, variables, full = lm
  x = tokens((2, 9), seed=1)
  want = full(variables, x)
  predict = tl.with_mode(model, "predict")
  step = jax.jit(lambda v, c, t: predict.apply({**v, "cache": c}, t, mutable=["cache"]))
  cache = decoding.init_cache(model, 2)
  shifted = jnp.pad(x, ((0, 0), (1, 0)))[:, :-1]  # what ShiftRight does in train/eval mode
  got = []
  for start, stop in [(0, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8), (8, 9)]:  # chunk, then 1s
    logits, updates = step(variables, cache, shifted[:, start:stop])
    cache = updates["cache"]
    got.append(logits)
  np.testing.assert_allclose(jnp.concatenate(got, axis=1), want, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_greedy_sampling_is_argmax_of_full_passes(lm):
  model, variables, full = lm
  prefix = tokens((2, 3), seed=2)
  out = decoding.autoregressive_sample(model, variables, prefix, max_length=6, temperature=0.0)
  assert out.shape == (2, 6) and out.dtype == jnp.int32
  seq = prefix
  for i in range(6):
    expected = jnp.argmax(next_logits(full, variables, seq), axis=-1)
    np.testing.assert_array_equal(out[:, i], expected)
    seq = jnp.concatenate([seq, out[:, i : i + 1]], axis=1)


@pytest.mark.slow
def test_beam_search_with_one_beam_is_greedy(lm):
  model, variables, _ = lm
  prefix = tokens((2, 2), seed=3)
  greedy = decoding.autoregressive_sample(model, variables, prefix, max_length=5,
                                          temperature=0.0)
  seqs, scores = decoding.beam_search(model, variables, prefix=prefix, max_length=5,
                                      beam_size=1, eos_id=None)
  assert seqs.shape == (2, 1, 5) and scores.shape == (2, 1)
  np.testing.assert_array_equal(seqs[:, 0], greedy)


@pytest.mark.slow
def test_top_k_never_samples_outside_the_top_k():
  model = TransformerLM(V, n_layers=1, **TINY)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), tokens((1, 4)))
  full = jax.jit(tl.with_mode(model, "eval").apply)
  prefix = jnp.tile(tokens((1, 2)), (16, 1))
  out = decoding.autoregressive_sample(model, variables, prefix, max_length=8, temperature=5.0,
                                       top_k=3, rng=jax.random.PRNGKey(7))
  seq, seen = prefix, set()
  for i in range(8):
    logits = np.asarray(next_logits(full, variables, seq))
    ranks = (logits > logits[np.arange(16), np.asarray(out[:, i])][:, None]).sum(-1)
    assert ranks.max() < 3, f"step {i}: a token outside the top 3 was sampled"
    seen.update(np.asarray(out[:, i]).tolist())
    seq = jnp.concatenate([seq, out[:, i : i + 1]], axis=1)
  assert len(seen) > 3  # sampling did happen (different rows, different tokens)


def test_temperature_sampling_follows_the_softmax():
  logits = jnp.array([[2.0, 1.0, 0.0, -1.0]])
  keys = jax.random.split(jax.random.PRNGKey(0), 4000)
  for temperature in (1.0, 2.0):
    draws = jax.vmap(lambda k, t=temperature: decoding.sample_logits(logits, k, t))(keys)[:, 0]
    freq = np.bincount(np.asarray(draws), minlength=4) / len(keys)
    np.testing.assert_allclose(freq, jax.nn.softmax(logits[0] / temperature), atol=0.03)
  top1 = jax.vmap(lambda k: decoding.sample_logits(logits, k, 1.0, top_k=1))(keys[:50])
  assert set(np.asarray(top1).ravel().tolist()) == {0}
  np.testing.assert_array_equal(decoding.sample_logits(logits, None, 0.0), [0])


@pytest.mark.slow
def test_sampling_is_reproducible_and_stops_at_eos():
  model = TransformerLM(V, n_layers=1, **TINY)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), tokens((1, 4)))
  prefix = tokens((3, 2), seed=4)
  a = decoding.autoregressive_sample(model, variables, prefix, 6, rng=jax.random.PRNGKey(1))
  b = decoding.autoregressive_sample(model, variables, prefix, 6, rng=jax.random.PRNGKey(1))
  np.testing.assert_array_equal(a, b)
  greedy = decoding.autoregressive_sample(model, variables, prefix, 6, temperature=0.0)
  eos = int(greedy[0, 2])
  stopped = np.asarray(decoding.autoregressive_sample(model, variables, prefix, 6,
                                                      temperature=0.0, eos_id=eos))
  for row, ref in zip(stopped, np.asarray(greedy), strict=True):
    hits = np.flatnonzero(ref == eos)
    end = hits[0] + 1 if hits.size else 6
    np.testing.assert_array_equal(row[:end], ref[:end])
    assert (row[end:] == 0).all()


@pytest.mark.slow
def test_encoder_decoder_sampling_and_beam_search():
  model = Transformer(V, n_encoder_layers=1, n_decoder_layers=2, **TINY)
  src = tokens((2, 6), seed=5).at[1, 4:].set(0)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), (src, tokens((2, 3))))
  full = jax.jit(tl.with_mode(model, "eval").apply)
  greedy = decoding.autoregressive_sample(model, variables, None, 5, temperature=0.0,
                                          inputs=src)
  seq = jnp.zeros((2, 0), jnp.int32)
  for i in range(5):
    logits, _ = full(variables, (src, pad_to(seq, 5)))
    np.testing.assert_array_equal(greedy[:, i], jnp.argmax(logits[:, i], axis=-1))
    seq = jnp.concatenate([seq, greedy[:, i : i + 1]], axis=1)
  one, _ = decoding.beam_search(model, variables, src, max_length=5, beam_size=1, eos_id=None)
  np.testing.assert_array_equal(one[:, 0], greedy)
  # Wider beams: sorted scores that are the sequences' length-normalised log-probabilities.
  seqs, scores = decoding.beam_search(model, variables, src, max_length=5, beam_size=3,
                                      eos_id=None, alpha=0.6)
  assert seqs.shape == (2, 3, 5)
  assert np.all(np.diff(np.asarray(scores), axis=1) <= 1e-6)

  def score(targets):
    log_probs = jax.nn.log_softmax(full(variables, (src, targets))[0])
    total = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0].sum(-1)
    return total / ((5.0 + 5) / 6.0) ** 0.6

  for beam in range(3):
    np.testing.assert_allclose(scores[:, beam], score(seqs[:, beam]), rtol=1e-4)
  assert np.all(scores[:, 0] >= score(greedy) - 1e-5)  # at least as likely as greedy


@pytest.mark.slow
def test_beam_search_finishes_beams_at_eos():
  model = TransformerLM(V, n_layers=1, **TINY)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), tokens((1, 4)))
  prefix = tokens((2, 2), seed=6)
  greedy = decoding.autoregressive_sample(model, variables, prefix, 6, temperature=0.0)
  eos = int(greedy[0, 1])
  seqs, scores = decoding.beam_search(model, variables, prefix=prefix, max_length=6,
                                      beam_size=2, eos_id=eos)
  assert np.all(np.isfinite(np.asarray(scores)))
  for row in np.asarray(seqs).reshape(-1, 6):
    hits = np.flatnonzero(row == eos)
    if hits.size:
      assert (row[hits[0] + 1 :] == 0).all()


def test_decoding_errors_are_clear():
  model = TransformerLM(V, n_layers=1, **TINY)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), tokens((1, 4)))
  with pytest.raises(ValueError, match="max_len"):
    decoding.autoregressive_sample(model, variables, tokens((1, 10)), max_length=20)
  mlp = MLP(layer_widths=(4,), n_classes=V)
  with pytest.raises(ValueError, match="no 'cache'"):
    decoding.autoregressive_sample(mlp, mlp.init(jax.random.PRNGKey(0), jnp.zeros((1, 3))),
                                   None, 3)
  with pytest.raises(ValueError, match="inputs"):
    decoding.beam_search(Transformer(V, n_encoder_layers=1, n_decoder_layers=1, **TINY),
                         {"params": {}}, None, max_length=3)


# ---------------------------------------------------------------- encoder caching, Trax's args


def _seq2seq(cache: bool = True):
  return Transformer(V, n_encoder_layers=1, n_decoder_layers=1, cache_encoder_in_predict=cache,
                     **TINY)


@pytest.mark.slow
def test_beam_search_runs_the_encoder_once(monkeypatch):
  from declax.models import transformer

  calls = []
  original = transformer.EncoderPositionalEncoding.forward

  def counting(self, x):  # one callback per executed encoder pass (init only traces shapes)
    if not self.is_initializing():
      rows = x.shape[0]
      jax.debug.callback(lambda: calls.append(rows))
    return original(self, x)

  monkeypatch.setattr(transformer.EncoderPositionalEncoding, "forward", counting)
  src = tokens((2, 6), seed=5).at[1, 4:].set(0)
  model = _seq2seq()
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), (src, tokens((2, 3))))
  seqs, scores = decoding.beam_search(model, variables, src, max_length=6, beam_size=3,
                                      eos_id=None)
  jax.effects_barrier()
  assert calls == [2]  # once per input: 2 rows, not once per beam (2 * 3 rows)
  calls.clear()
  slow_seqs, slow_scores = decoding.beam_search(_seq2seq(cache=False), variables, src,
                                                max_length=6, beam_size=3, eos_id=None)
  jax.effects_barrier()
  # Without the cache: the first call (once per input) and each of the 6 loop steps (per beam).
  assert calls == [2] + [6] * 6
  np.testing.assert_array_equal(seqs, slow_seqs)
  np.testing.assert_allclose(scores, slow_scores, rtol=1e-5)


@pytest.mark.slow
def test_trax_arguments_and_the_stream():
  model = TransformerLM(V, n_layers=1, **TINY)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), tokens((1, 4)))
  prompt = tokens((2, 3), seed=3)
  greedy = decoding.autoregressive_sample(model, variables, prompt, 5, temperature=0.0)
  # Trax: an LM's `inputs` are its prompt; unjitted and eval-mode decoding agree.
  for kwargs in (dict(), dict(accelerate=False), dict(eval_mode=True, eval_min_length=4)):
    same = decoding.autoregressive_sample(model, variables, inputs=prompt, max_length=5,
                                          temperature=0.0, batch_size=2, **kwargs)
    np.testing.assert_array_equal(same, greedy)
  stream = decoding.autoregressive_sample_stream(model, variables, prompt, temperature=0.0)
  first = [next(stream) for _ in range(5)]
  assert first[0].shape == (2,)
  np.testing.assert_array_equal(np.stack(first, 1), greedy)
  with pytest.raises(decoding.ContextLengthError, match="position 25.*is 24"):
    for _ in range(30):
      next(stream)
  with pytest.raises(ValueError, match=r"batch size \(2\) does not match batch_size arg \(3\)"):
    decoding.autoregressive_sample(model, variables, inputs=prompt, batch_size=3)
  unprompted = decoding.autoregressive_sample(model, variables, max_length=2, batch_size=3)
  assert unprompted.shape == (3, 2)
  a = decoding.beam_search(model, variables, prefix=prompt, max_length=4, n_beams=2,
                           length_penalty=1.0, eos_id=None)
  b = decoding.beam_search(model, variables, inputs=prompt, max_length=4, beam_size=2, alpha=1.0,
                           eos_id=None, accelerate=False)
  np.testing.assert_array_equal(a[0], b[0])


def test_prompt_beyond_the_context_names_both_numbers():
  model = TransformerLM(V, n_layers=1, **TINY)  # max_len 24
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), tokens((1, 4)))
  with pytest.raises(decoding.ContextLengthError,
                     match=r"needs 30 positions \(start token \+ prompt of 10 \+ max_length 20 "
                           r"- 1\).* is 24.*max_length to 14") as info:
    decoding.autoregressive_sample(model, variables, tokens((1, 10)), max_length=20)
  assert CATALOGUE["TX13"] in str(info.value)
  with pytest.raises(decoding.ContextLengthError, match="is 24"):
    decoding.autoregressive_sample(model, variables, tokens((1, 10)), max_length=20,
                                   accelerate=False)
