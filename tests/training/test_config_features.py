"""The config keys of the Loop's optional features reach the Loop (digits, a tiny MLP)."""

import os

import numpy as np
import optax
import pytest

from declax.training import from_config
from declax.training.callbacks import EarlyStopping, ProfileSteps
from declax.training.model_init import ModelInitError
from declax.training.optimizers import ema_params_of
from tests.training.test_from_config import _config


@pytest.mark.slow
def test_feature_keys_build_the_loop_they_describe(tmp_path):
  pre = _config()
  trained = from_config.train_and_evaluate(pre, tmp_path / "pre", print_summary=False).params
  config = _config(checkpoint_low_metric="loss", early_stopping_patience=3,
                   permanent_checkpoint_every=2, profile_steps=(1, 1))
  config.optimizer.ema_decay = 0.9
  config.schedule.update(plateau_patience=2, plateau_factor=0.5)
  config.model_init = str(tmp_path / "pre")
  loop = from_config.build_loop(config, tmp_path / "run", print_summary=False)
  try:
    assert any(isinstance(c, EarlyStopping) and c.patience == 3 for c in loop._callbacks)
    assert any(isinstance(c, ProfileSteps) for c in loop._callbacks)
    assert loop._options.plateau == dict(metric="eval/loss", patience=2, factor=0.5, cooldown=0)
    assert loop._best == ("eval/loss", "min")
    assert ema_params_of(loop.state.opt_state) is not None
    plateau_states = optax.tree_utils.tree_get_all_with_path(loop.state.opt_state,
                                                              "ReduceLROnPlateauState")
    assert len(plateau_states) == 1
    np.testing.assert_array_equal(np.asarray(loop.params["layers_1"]["kernel"]),
                                  np.asarray(trained["layers_1"]["kernel"]))
    loop.run(4)
  finally:
    loop.close()
  assert {"2", "4"} <= set(os.listdir(tmp_path / "run" / "checkpoints"))
  assert (tmp_path / "run" / "curves.png").exists()


def test_a_bad_model_init_path_is_an_error(tmp_path):
  config = _config()
  config.model_init = str(tmp_path / "missing")
  with pytest.raises(ModelInitError, match="does not exist"):
    from_config.build_loop(config, None, print_summary=False)
