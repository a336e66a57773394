"""MultiEmbeddingModel: arity, printing, per-column embeddings, numeric pass-through."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import declax.layers as tl
from declax.models import MultiEmbeddingModel


def inputs(batch=3):
  rng = np.random.RandomState(0)
  return (jnp.asarray(rng.randint(0, 7, batch)), jnp.asarray(rng.randint(0, 3, batch)),
          jnp.asarray(rng.randn(batch, 2), jnp.float32))


def test_arity_and_printing():
  model = MultiEmbeddingModel([7, 3], d_feature=4, n_numeric=2, hidden=(16, 8), n_outputs=2)
  assert (model.n_in, model.n_out) == (3, 1)
  assert str(model) == (
      "Serial_in3[\n  Parallel_in3_out3[\n    Embedding_7_4\n    Embedding_3_4\n    ToFloat\n  ]\n"
      "  Concatenate_in3\n  Dense_16\n  Relu\n  Dropout\n  Dense_8\n  Relu\n  Dropout\n"
      "  Dense_2\n]")
  assert MultiEmbeddingModel([7, 3], d_feature=4).n_in == 2
  assert MultiEmbeddingModel([7], d_feature=4).n_in == 1
  with pytest.raises(ValueError, match="at least one"):
    MultiEmbeddingModel([], d_feature=4)


def test_each_column_has_its_own_embedding_and_numbers_pass_through():
  model = MultiEmbeddingModel([7, 3], d_feature=4, n_numeric=2, hidden=(), n_outputs=1)
  x = inputs()
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  params = variables["params"]
  tables = params["layers_0"]
  assert tables["layers_0"]["embedding"].shape == (7, 4)
  assert tables["layers_1"]["embedding"].shape == (3, 4)
  y = model.apply(variables, x)
  # With no hidden layer the model is linear in [emb_0(c0), emb_1(c1), numeric].
  kernel = params["layers_2"]["kernel"]
  features = jnp.concatenate([tables["layers_0"]["embedding"][x[0]],
                              tables["layers_1"]["embedding"][x[1]], x[2]], axis=-1)
  bias = params["layers_2"]["bias"][None]
  np.testing.assert_allclose(y, features @ kernel + bias, rtol=1e-5)


def test_log_softmax_output_and_errors_name_the_column():
  model = MultiEmbeddingModel([7, 3], d_feature=4, n_numeric=2, n_outputs=3,
                              output_layer="LogSoftmax")
  x = inputs()
  log_probs = model.apply(model.init(jax.random.PRNGKey(0), x), x)
  np.testing.assert_allclose(jnp.exp(log_probs).sum(-1), 1.0, rtol=1e-5)
  path = r"Serial\[0\] > Parallel\[1\] > Embedding_3_4: TypeError"
  with pytest.raises(tl.LayerError, match=path):
    model.init(jax.random.PRNGKey(0), (x[0], x[1].astype(jnp.float32), x[2]))
