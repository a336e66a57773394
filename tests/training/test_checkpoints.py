"""Checkpointer: save/restore with data state, retention, tree checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from declax.training.checkpoints import Checkpointer, CheckpointMismatchError, compare_trees
from declax.training.state import TrainState


def _state(width=4, step=0):
  return TrainState(step=jnp.asarray(step, jnp.int32),
                    params={"dense": {"kernel": jnp.arange(3.0 * width).reshape(3, width),
                                      "bias": jnp.ones((width,))}},
                    opt_state=(jnp.zeros((), jnp.int32),), model_state={},
                    rng=jax.random.PRNGKey(7))


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def test_roundtrip_with_data_state(tmp_path):
  ckpt = Checkpointer(tmp_path, max_to_keep=2)
  state = _state(step=5)
  assert ckpt.save(5, state, {"train": {"index": 42}})
  ckpt.wait_until_finished()
  restored, data = Checkpointer(tmp_path).restore(5, _abstract(state))
  assert data == {"train": {"index": 42}}
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
    np.testing.assert_array_equal(a, b)
  assert isinstance(restored, TrainState)
  ckpt.close()


def test_keeps_the_newest_and_skips_saved_steps(tmp_path):
  ckpt = Checkpointer(tmp_path, max_to_keep=2, async_save=False)
  for step in (1, 2, 3):
    ckpt.save(step, _state(step=step))
  assert not ckpt.save(3, _state(step=3))
  ckpt.wait_until_finished()
  assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3
  # Atomic: only committed step directories, no temporaries left behind.
  assert sorted(p.name for p in tmp_path.iterdir()) == ["2", "3"]
  ckpt.close()


def test_mismatch_lists_missing_unexpected_and_reshaped_paths(tmp_path):
  ckpt = Checkpointer(tmp_path)
  ckpt.save(1, _state(width=4))
  ckpt.wait_until_finished()
  other = _state(width=5)
  other = other.replace(params={**other.params, "extra": {"w": jnp.zeros((2,))}},
                        opt_state=())
  with pytest.raises(CheckpointMismatchError) as info:
    ckpt.restore(1, _abstract(other))
  err = info.value
  assert err.missing == ["params/extra/w"]
  assert err.unexpected == ["opt_state/0"]
  assert [p for p, _, _ in err.mismatched] == ["params/dense/bias", "params/dense/kernel"]
  text = str(err)
  assert "params/dense/kernel: float32[3, 4] vs float32[3, 5]" in text
  assert "in the checkpoint but not in the model (1)" in text
  ckpt.close()


def test_compare_trees_dtypes():
  missing, unexpected, mismatched = compare_trees({"a": ((2,), "float32")},
                                                  {"a": ((2,), "bfloat16")})
  assert not missing and not unexpected
  assert mismatched == [("a", ((2,), "float32"), ((2,), "bfloat16"))]


def test_listing_is_truncated(tmp_path):
  err = CheckpointMismatchError("/x", [f"p{i}" for i in range(30)], [], [])
  assert "... and 10 more" in str(err)


def test_a_checkpoint_written_before_the_state_had_heads_restores(tmp_path):
  # Checkpoints of earlier declax versions have no `heads` field; a one-task run resumes them.
  from flax import struct

  @struct.dataclass
  class OlderTrainState:
    step: jax.Array
    params: dict
    opt_state: object
    model_state: dict
    rng: jax.Array

  params = {"w": jnp.arange(3.0)}
  opt_state = optax.adam(1e-3).init(params)
  older = OlderTrainState(jnp.int32(7), params, opt_state, {}, jax.random.PRNGKey(0))
  ckpt = Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(7, older)
  abstract = jax.eval_shape(lambda: TrainState(step=jnp.int32(0), params=params,
                                               opt_state=opt_state, model_state={},
                                               rng=jax.random.PRNGKey(0)))
  state, _ = ckpt.restore(7, abstract)
  ckpt.close()
  assert isinstance(state, TrainState) and state.heads == {} and int(state.step) == 7
  np.testing.assert_array_equal(state.params["w"], params["w"])
  assert type(state.opt_state[0]).__name__ == "ScaleByAdamState"
