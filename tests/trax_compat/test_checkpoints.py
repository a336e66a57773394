"""Trax 1.4.1 checkpoints load into the Trax-equivalent declax models and give Trax's outputs;
Adam slots continue training with Trax's update rule; bad files are refused with clear errors."""

from __future__ import annotations

import functools
import gzip
import json
import os
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import declax.layers as tl
from declax.errors import DeclaxError
from declax.trax_compat import (
    TraxCheckpointError,
    TraxModelError,
    init_from_file,
    model_from_trax,
    read_checkpoint,
    trax_adam,
)
from declax.trax_compat.files import read_arrays
from declax.trax_compat.models import _layer_class

FIXTURES = Path(__file__).parents[2] / ".." / "shared" / "trax_checkpoints"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(),
                                    reason=f"Trax checkpoint fixtures not found at {FIXTURES}")
# Made by Trax 1.4.1 too, small enough to live in the repository (see fixtures/README.md).
REPO_FIXTURES = Path(__file__).parent / "fixtures"


def _fixture_dir(name: str) -> Path:
  return REPO_FIXTURES / name if (REPO_FIXTURES / name).is_dir() else FIXTURES / name


def _load_fixture(name: str, mode: str = "eval"):
  folder = _fixture_dir(name)
  spec = json.loads((folder / "model.json").read_text())
  model = model_from_trax(spec["model"], mode=mode, **spec["kwargs"])
  if (folder / "inputs.npy").exists():
    inputs = np.load(folder / "inputs.npy")
  else:
    inputs = (np.load(folder / "inputs0.npy"), np.load(folder / "inputs1.npy"))
  return model, inputs, np.load(folder / "expected_outputs.npy")


def _max_diff(name: str) -> float:
  model, inputs, expected = _load_fixture(name)
  variables = init_from_file(model, _fixture_dir(name) / "model.pkl.gz", inputs)
  outputs = model.apply(variables, inputs)
  outputs = outputs[0] if isinstance(outputs, tuple) else outputs
  assert outputs.shape == expected.shape
  return float(np.max(np.abs(np.asarray(outputs) - expected)))


@needs_fixtures
def test_mlp_reproduces_trax_outputs():
  assert _max_diff("mlp") < 1e-4


@needs_fixtures
@pytest.mark.slow
@pytest.mark.parametrize("name", ["transformer_lm", "transformer"])
def test_transformers_reproduce_trax_outputs(name):
  assert _max_diff(name) < 1e-4


def test_rnn_lm_reproduces_trax_outputs():
  assert _max_diff("rnn_lm") < 1e-4


@pytest.mark.slow
def test_reformer_lm_reproduces_trax_outputs():
  """Trax's `ReformerLM` with chunked causal `SelfAttention` (deterministic, unlike LSH's
  random hashing: see fixtures/README.md) and its reversible layers."""
  assert _max_diff("reformer_lm") < 1e-4


@pytest.mark.slow
def test_reformer_lm_lsh_reproduces_trax_outputs():
  """Trax's `LSHSelfAttention` (shared queries/keys, two hash rounds) with one chunk covering the
  sequence: the random rotations only reorder positions inside the chunk, so Trax's output does
  not depend on its hash rng (checked when the fixture was made) and declax must match it."""
  assert _max_diff("reformer_lm_lsh") < 1e-4


@needs_fixtures
def test_input_signature_from_the_checkpoint():
  model, inputs, expected = _load_fixture("mlp")
  variables = init_from_file(model, FIXTURES / "mlp" / "model.pkl.gz")  # signature f32[16,12]
  np.testing.assert_allclose(model.apply(variables, inputs), expected, atol=1e-4)


@needs_fixtures
def test_read_checkpoint_contents():
  ckpt = read_checkpoint(FIXTURES / "mlp" / "model.pkl.gz")
  assert ckpt.step == 50
  assert [w.shape for w in ckpt.flat_weights] == [(12, 32), (32,), (32, 16), (16,), (16, 5), (5,)]
  assert len(ckpt.flat_slots) == 12
  assert ckpt.input_signature[0].shape == (16, 12)


@needs_fixtures
def test_save_to_file_format(tmp_path):
  """`Layer.save_to_file` pickles the weights themselves (no .npy.gz next to it)."""
  weights = read_arrays(str(FIXTURES / "mlp" / "model.weights.npy.gz"))
  path = tmp_path / "mlp.pkl.gz"
  with gzip.open(path, "wb") as f:
    pickle.dump({"flat_weights": weights, "flat_state": []}, f)
  model, inputs, expected = _load_fixture("mlp")
  variables = init_from_file(model, path, inputs)
  np.testing.assert_allclose(model.apply(variables, inputs), expected, atol=1e-4)


def _trax_adam_step(w, g, m, v, step, lr=0.01, b1=0.9, b2=0.999, eps=1e-5, wd=1e-5):
  """Trax 1.4's `Adam.update`, in numpy."""
  m = (1 - b1) * g + b1 * m
  v = (1 - b2) * g**2 + b2 * v
  mhat, vhat = m / (1 - b1 ** (step + 1)), v / (1 - b2 ** (step + 1))
  return (1 - wd) * w - lr * mhat / (np.sqrt(vhat) + eps), m, v


@pytest.mark.slow
@needs_fixtures
@pytest.mark.parametrize("weight_decay", [1e-5, 0.0])
def test_adam_slots_continue_with_trax_update_rule(weight_decay):
  model, inputs, _ = _load_fixture("mlp", mode="train")
  run = init_from_file(model, FIXTURES / "mlp" / "model.pkl.gz", inputs, weights_only=False)
  assert run.step == 50
  params = run.variables["params"]
  grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, inputs) ** 2))(params)
  optimizer = (trax_adam(0.01, weight_decay_rate=weight_decay) if weight_decay
               else optax.adam(0.01, eps=1e-5))
  updates, state = optimizer.update(grads, run.opt_state, params)
  new_params = optax.apply_updates(params, updates)

  flat_w = read_arrays(str(FIXTURES / "mlp" / "model.weights.npy.gz"))
  slots = read_arrays(str(FIXTURES / "mlp" / "model.opt_slots0.npy.gz"))
  dense = [k for k in params if "kernel" in params[k]]  # the Dense layers, in order
  assert len(dense) == 3
  for i, key in enumerate(dense):
    for j, leaf in enumerate(("kernel", "bias")):
      k = 2 * i + j
      expected_w, expected_m, expected_v = _trax_adam_step(
          flat_w[k], np.asarray(grads[key][leaf]), slots[2 * k], slots[2 * k + 1], run.step,
          wd=weight_decay)
      np.testing.assert_allclose(new_params[key][leaf], expected_w, rtol=1e-6, atol=1e-7)
      np.testing.assert_allclose(state[0].mu[key][leaf], expected_m, rtol=1e-6, atol=1e-8)
      np.testing.assert_allclose(state[0].nu[key][leaf], expected_v, rtol=1e-6, atol=1e-10)
  assert int(state[0].count) == 51


def _trax_lstm_lm(weights, tokens, n_layers):
  """Trax's RNNLM (LSTMCell, zero state, eval mode) in numpy, from Trax's flat weights."""
  def sigmoid(x):
    return 1 / (1 + np.exp(-x))
  x = np.pad(tokens, ((0, 0), (1, 0)))[:, :-1]
  x = weights[0][x]
  for layer in range(n_layers):
    w, b = weights[1 + 2 * layer], weights[2 + 2 * layer]
    n = b.shape[0] // 4
    c = h = np.zeros((x.shape[0], n), np.float32)
    outputs = []
    for t in range(x.shape[1]):
      i, j, f, o = np.split(np.concatenate([x[:, t], h], -1) @ w + b, 4, -1)
      c = c * sigmoid(f) + sigmoid(i) * np.tanh(j)
      h = np.tanh(c) * sigmoid(o)
      outputs.append(h)
    x = np.stack(outputs, 1)
  return x @ weights[-2] + weights[-1]


def test_rnnlm_maps_trax_lstm_weights(tmp_path):
  rng = np.random.default_rng(0)
  vocab, d, n_layers = 7, 6, 2
  weights = [rng.normal(size=(vocab, d))]
  for _ in range(n_layers):
    weights += [rng.normal(size=(2 * d, 4 * d)) * 0.3, rng.normal(size=(4 * d,)) * 0.1]
  weights += [rng.normal(size=(d, vocab)), rng.normal(size=(vocab,))]
  weights = [w.astype(np.float32) for w in weights]
  path = tmp_path / "rnnlm.pkl.gz"
  with gzip.open(path, "wb") as f:
    pickle.dump({"flat_weights": weights}, f)
  tokens = rng.integers(1, vocab, size=(2, 5)).astype(np.int32)
  model = model_from_trax("RNNLM", vocab_size=vocab, d_model=d, n_layers=n_layers, mode="eval")
  variables = init_from_file(model, path, tokens)
  np.testing.assert_allclose(model.apply(variables, tokens), _trax_lstm_lm(weights, tokens, 2),
                             atol=1e-4)


# ---- bad input ---------------------------------------------------------------------------------


class _RunsCode:
  def __init__(self, marker: str):
    self.marker = marker

  def __reduce__(self):
    return (os.mkdir, (self.marker,))


def test_refuses_a_pickle_that_would_run_code(tmp_path):
  marker = tmp_path / "was_run"
  path = tmp_path / "evil.pkl.gz"
  with gzip.open(path, "wb") as f:
    pickle.dump({"flat_weights": [_RunsCode(str(marker))]}, f)
  with pytest.raises(TraxCheckpointError, match=r"refused to unpickle posix\.mkdir") as info:
    read_checkpoint(path)
  assert isinstance(info.value, DeclaxError) and isinstance(info.value, ValueError)
  assert "could run code" in str(info.value)
  assert not marker.exists()


def test_refuses_object_arrays(tmp_path):
  path = tmp_path / "objects.pkl.gz"
  with gzip.open(path, "wb") as f:
    pickle.dump({"flat_weights": [np.array([1, "a"], dtype=object)]}, f)
  with pytest.raises(TraxCheckpointError, match="dtype object"):
    read_checkpoint(path)


def test_wrong_files(tmp_path):
  with pytest.raises(TraxCheckpointError, match="no such file"):
    read_checkpoint(tmp_path / "missing.pkl.gz")
  text = tmp_path / "notes.txt"
  text.write_text("hello")
  with pytest.raises(TraxCheckpointError, match="not a gzip file"):
    read_checkpoint(text)
  other = tmp_path / "other.pkl.gz"
  with gzip.open(other, "wb") as f:
    pickle.dump({"weights": []}, f)
  with pytest.raises(TraxCheckpointError, match=r"not a Trax checkpoint: expected a dict with "
                     r"'flat_weights'.*got \['weights'\]"):
    read_checkpoint(other)


@needs_fixtures
def test_wrong_model_lists_mismatched_paths():
  model = model_from_trax("MLP", layer_widths=(32, 16, 4))
  with pytest.raises(TraxCheckpointError) as info:
    init_from_file(model, FIXTURES / "mlp" / "model.pkl.gz", np.zeros((4, 12), np.float32))
  message = str(info.value)
  assert "do not fit the model's 6 parameters" in message
  assert "layers_5/kernel: declax shape (16, 4), Trax weights #4 has shape (16, 5)" in message
  assert "layers_5/bias: declax shape (4,), Trax weights #5 has shape (5,)" in message
  assert "model_from_trax(name, **trax_kwargs)" in message


@needs_fixtures
def test_wrong_model_weight_count():
  model = model_from_trax("MLP", layer_widths=(32, 16))
  with pytest.raises(TraxCheckpointError, match=r"2 Trax weights left over \(#4..: \(16, 5\), "
                     r"\(5,\)\)"):
    init_from_file(model, FIXTURES / "mlp" / "model.pkl.gz", np.zeros((4, 12), np.float32))


def test_model_from_trax_errors():
  with pytest.raises(TraxModelError, match="no declax equivalent of trax.models.TransformerLm; "
                     "did you mean TransformerLM"):
    model_from_trax("TransformerLm", vocab_size=10)
  with pytest.raises(TraxModelError, match=r"does not take \['n_layer'\]; did you mean n_layers"):
    model_from_trax("TransformerLM", vocab_size=10, n_layer=2)
  assert isinstance(TraxModelError("x"), TypeError)


def test_efficient_attention_biases_follow_trax_order(tmp_path):
  """Trax's `SelfAttention(bias=True)` stores `w_q, w_k, w_v, w_o, b_q, b_k, b_v`."""
  rng = np.random.default_rng(0)
  n_heads, d_model, d_head = 2, 8, 4
  shapes = [(n_heads, d_model, d_head)] * 3 + [(n_heads, d_head, d_model)] + [(n_heads, d_head)] * 3
  weights = [rng.normal(size=s).astype(np.float32) for s in shapes]
  path = tmp_path / "attention.pkl.gz"
  with gzip.open(path, "wb") as f:
    pickle.dump({"flat_weights": weights}, f)
  layer = tl.SelfAttention(n_heads=n_heads, d_qk=d_head, d_v=d_head, bias=True, mode="eval")
  params = init_from_file(layer, path, np.zeros((1, 4, d_model), np.float32))["params"]
  for i, name in enumerate(["w_q", "w_k", "w_v", "w_o", "b_q", "b_k", "b_v"]):
    np.testing.assert_array_equal(params[name], weights[i])


def test_model_from_trax_reformer_lm_arguments():
  cls = _layer_class("tl.SelfAttention(chunk_len=16, n_chunks_before=1)", "attention_type")
  assert isinstance(cls, functools.partial) and cls.func is tl.SelfAttention
  assert cls.keywords == {"chunk_len": 16, "n_chunks_before": 1}
  assert _layer_class("LSHSelfAttention", "attention_type") is tl.LSHSelfAttention
  for bad, match in [("SelfAttention(chunk_len=f())", "only literals"),
                     ("SelfAttention(16)", "optionally with literal keyword arguments"),
                     ("SelfAttention(chunk_lenn=16)", r"does not take \['chunk_lenn'\]; did you "
                                                      r"mean chunk_len"),
                     ("SelfAtention", "unknown attention_type 'SelfAtention'; did you mean "
                                      "SelfAttention")]:
    with pytest.raises(TraxModelError, match=match):
      model_from_trax("ReformerLM", vocab_size=8, attention_type=bad)
  with pytest.raises(TraxModelError, match="loss_sparsity.*not supported"):
    model_from_trax("ReformerLM", vocab_size=8, loss_sparsity=4)
  with pytest.raises(TraxModelError, match="ff_sparsity=2 is not supported"):
    model_from_trax("ReformerLM", vocab_size=8, ff_sparsity=2)
