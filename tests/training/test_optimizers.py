"""Optimizers and schedules built from config values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from declax.registry import RegistryError
from declax.training.optimizers import (
    SCHEDULES,
    current_learning_rate,
    decay_mask,
    make_optimizer,
    make_schedule,
)

PARAMS = {"dense": {"kernel": jnp.full((3, 2), 2.0), "bias": jnp.full((2,), 2.0)},
          "norm": {"scale": jnp.full((2,), 2.0)}}


def _step(tx, params, grads, state=None):
  state = tx.init(params) if state is None else state
  updates, state = jax.jit(tx.update)(grads, state, params)
  return optax.apply_updates(params, updates), state


def _zeros(params):
  return jax.tree.map(jnp.zeros_like, params)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "momentum", "adafactor", "lion"])
def test_every_optimizer_minimises_a_quadratic(name):
  tx = make_optimizer(name, 0.05, clip_norm=10.0)
  params, state = PARAMS, None
  loss = lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
  start = loss(params)
  for _ in range(20):
    params, state = _step(tx, params, jax.grad(loss)(params), state)
  assert loss(params) < 0.8 * start
  np.testing.assert_allclose(current_learning_rate(state), 0.05, rtol=1e-6)


@pytest.mark.parametrize("name", ["adamw", "lion", "adafactor", "sgd", "adam"])
def test_weight_decay_skips_vectors(name):
  # With zero gradients only weight decay moves parameters: kernels shrink, biases and norm
  # scales (ndim < 2) do not.
  tx = make_optimizer(name, 0.1, weight_decay=0.5)
  params, _ = _step(tx, PARAMS, _zeros(PARAMS))
  assert float(params["dense"]["kernel"][0, 0]) < 2.0
  assert float(params["dense"]["bias"][0]) == 2.0
  assert float(params["norm"]["scale"][0]) == 2.0


def test_decay_all_and_mask():
  assert decay_mask(PARAMS) == {"dense": {"kernel": True, "bias": False},
                                "norm": {"scale": False}}
  params, _ = _step(make_optimizer("adamw", 0.1, weight_decay=0.5, decay_all=True), PARAMS,
                    _zeros(PARAMS))
  assert float(params["dense"]["bias"][0]) < 2.0


def test_adamw_without_weight_decay_does_not_decay():
  params, _ = _step(make_optimizer("adamw", 0.1), PARAMS, _zeros(PARAMS))
  np.testing.assert_array_equal(params["dense"]["kernel"], PARAMS["dense"]["kernel"])


def test_clipping_limits_the_global_norm():
  tx = make_optimizer("sgd", 1.0, clip_norm=1.0)
  grads = jax.tree.map(lambda x: jnp.full_like(x, 100.0), PARAMS)
  params, _ = _step(tx, PARAMS, grads)
  delta = jax.tree.map(lambda a, b: a - b, PARAMS, params)
  np.testing.assert_allclose(optax.tree.norm(delta), 1.0, rtol=1e-5)


def test_gradient_accumulation_averages_k_steps():
  tx = make_optimizer("sgd", 1.0, grad_accum_steps=2)
  g1 = jax.tree.map(lambda x: jnp.full_like(x, 1.0), PARAMS)
  g2 = jax.tree.map(lambda x: jnp.full_like(x, 3.0), PARAMS)
  after_one, state = _step(tx, PARAMS, g1)
  np.testing.assert_array_equal(after_one["dense"]["kernel"], PARAMS["dense"]["kernel"])
  after_two, _ = _step(tx, after_one, g2, state)
  np.testing.assert_allclose(after_two["dense"]["kernel"], 2.0 - 2.0)  # lr * mean(1, 3)


def test_learning_rate_follows_the_schedule_in_the_state():
  schedule = make_schedule("warmup_linear", learning_rate=1.0, warmup_steps=2, decay_steps=6)
  tx = make_optimizer("adam", schedule)
  state, params = None, PARAMS
  seen = []
  for _ in range(4):
    params, state = _step(tx, params, _zeros(params), state)
    seen.append(float(current_learning_rate(state)))
  np.testing.assert_allclose(seen, [schedule(i) for i in range(4)], rtol=1e-6)


def test_schedules():
  values = {n: [float(make_schedule(n, learning_rate=1.0, warmup_steps=4, decay_steps=12)(i))
                for i in (0, 2, 4, 8, 12)] for n in SCHEDULES}
  np.testing.assert_allclose(values["constant"], [1, 1, 1, 1, 1])
  np.testing.assert_allclose(values["warmup_constant"], [0, 0.5, 1, 1, 1])
  np.testing.assert_allclose(values["warmup_linear"], [0, 0.5, 1, 0.5, 0], atol=1e-6)
  np.testing.assert_allclose(values["warmup_cosine"], [0, 0.5, 1, 0.5, 0], atol=1e-6)
  np.testing.assert_allclose(values["warmup_rsqrt"], [0, 0.5, 1, np.sqrt(0.5), np.sqrt(4 / 12)],
                             rtol=1e-6)


def test_schedule_and_optimizer_errors():
  with pytest.raises(ValueError, match="Unknown schedule 'cosin'"):
    make_schedule("cosin")
  with pytest.raises(ValueError, match="needs decay_steps"):
    make_schedule("warmup_cosine", warmup_steps=10, decay_steps=None)
  with pytest.raises(RegistryError, match="did you mean 'adamw'"):
    make_optimizer("adamww")
  with pytest.raises(TypeError, match=r"does not take argument\(s\) \['beta1'\]"):
    make_optimizer("adam", beta1=0.9)
  with pytest.raises(ValueError, match="grad_accum_steps"):
    make_optimizer("adam", grad_accum_steps=0)


def test_optimizer_kwargs_are_passed_through():
  tx = make_optimizer("momentum", 0.1, momentum=0.5, nesterov=True)
  params, _ = _step(tx, PARAMS, jax.tree.map(jnp.ones_like, PARAMS))
  assert float(params["dense"]["kernel"][0, 0]) < 2.0


@pytest.mark.parametrize("name, kwargs", [("lamb", {"weight_decay": 0.1}), ("lion", {}),
                                          ("adafactor", {"weight_decay": 0.1}), ("rmsprop", {}),
                                          ("nadamw", {"weight_decay": 0.1})])
@pytest.mark.slow
def test_any_optax_optimizer_by_name_with_its_learning_rate_in_the_state(name, kwargs):
  tx = make_optimizer(name, 3e-3, **kwargs)
  state = tx.init(PARAMS)
  _, state = tx.update(PARAMS, state, PARAMS)
  np.testing.assert_allclose(current_learning_rate(state), 3e-3, rtol=1e-6)


def test_optimizer_arguments_are_checked_against_the_optax_signature():
  with pytest.raises(TypeError, match="'lamb' does not take argument.*did you mean 'b1'"):
    make_optimizer("lamb", 1e-3, bta1=0.9)
