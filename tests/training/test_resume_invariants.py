"""Resuming from a checkpoint, in process: what is saved comes back bit for bit, the right
checkpoint is chosen, and what cannot continue the run is refused with a clear message.

(tests/training/test_checkpoint.py kills real runs; these are the fast unit checks.)
"""

import os

import jax
import numpy as np
import optax
import pytest

from bilstm_jax.errors import CheckpointError
from bilstm_jax.training import checkpoint, integrity
from bilstm_jax.training import workdir as workdir_lib
from bilstm_jax.training.steps import TrainState


def _state(seed: int, model_state: bool = True, steps: int = 3) -> TrainState:
  """A small state with non-trivial optimiser buffers: `steps` Adam updates taken."""
  rng = np.random.default_rng(seed)
  params = {
    'dense': {
      'kernel': rng.normal(size=(3, 2)).astype(np.float32),
      'bias': rng.normal(size=2).astype(np.float32),
    }
  }
  extra = {'batch_stats': {'mean': rng.normal(size=2).astype(np.float32)}} if model_state else {}
  state = TrainState.create(apply_fn=None, params=params, tx=optax.adam(0.1), model_state=extra)
  for _ in range(steps):
    grads = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params)
    state = state.apply_gradients(grads=grads)
  return state


def _leaves_equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize('model_state', [True, False], ids=['model_state', 'params_only'])
def test_restore_gives_back_exactly_what_was_saved(tmp_path, model_state):
  saved, rng = _state(0, model_state), jax.random.key(7)
  meta = {'epoch': 2, 'batch': 5, 'sums': [1.5, 3.0], 'config': {'model': {'hidden': 4}}}
  ckpts = checkpoint.Checkpoints(str(tmp_path))
  ckpts.save(saved, rng, meta, {'dev_loss': 0.5})
  ckpts.close()

  fresh = _state(1, model_state, steps=0)  # another run's start: same structure
  reopened = checkpoint.Checkpoints(str(tmp_path))
  assert reopened.latest_step() == 3 == int(saved.step)  # numbered by state.step
  state, rng_back, meta_back = reopened.restore(3, fresh, jax.random.key(0))
  assert int(state.step) == 3 and meta_back == meta
  _leaves_equal(state.params, saved.params)
  _leaves_equal(state.opt_state, saved.opt_state)
  if model_state:
    _leaves_equal(state.model_state, saved.model_state)
  else:
    assert state.model_state == {}
  np.testing.assert_array_equal(jax.random.key_data(rng_back), jax.random.key_data(rng))
  # The restored dropout key draws what the saved one draws.
  np.testing.assert_array_equal(jax.random.uniform(rng_back, (3,)), jax.random.uniform(rng, (3,)))
  _leaves_equal(reopened.restore_params(3, fresh.params), saved.params)
  assert reopened.read_meta(3) == meta
  # The optimiser state comes back as optax's structure, and every array on this device.
  assert jax.tree.structure(state.opt_state) == jax.tree.structure(saved.opt_state)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  for leaf in jax.tree.leaves((state.params, state.opt_state)):
    assert isinstance(leaf, jax.Array) and leaf.sharding == device
  assert os.path.exists(os.path.join(reopened.path(3), integrity.MANIFEST))
  reopened.close()


def test_the_newest_and_the_best_checkpoint_are_chosen(tmp_path):
  ckpts = checkpoint.Checkpoints(str(tmp_path), metric='dev_f1', mode='max', keep_best=1)
  scores = {1: 0.3, 2: 0.8, 3: 0.5, 4: 0.1}
  states = {}
  for step, f1 in scores.items():
    states[step] = _state(step, steps=1)
    ckpts.save(states[step], jax.random.key(step), {'step': step}, {'dev_f1': f1}, step=step)
  # Kept: the two newest and the best.
  assert sorted(ckpts.manager.all_steps()) == [2, 3, 4]
  assert ckpts.latest_step() == 4 and ckpts.best_step() == 2
  fresh = _state(9, steps=0)
  step, state, rng, meta = ckpts.restore_good(fresh, jax.random.key(0))
  assert step == 4 and meta == {'step': 4}
  _leaves_equal(state.params, states[4].params)
  np.testing.assert_array_equal(jax.random.key_data(rng), jax.random.key_data(jax.random.key(4)))
  step, params, _ = ckpts.restore_params_good('best', fresh.params)
  assert step == 2
  _leaves_equal(params, states[2].params)
  assert ckpts.restore_params_good('latest', fresh.params)[0] == 4
  ckpts.close()


def test_an_empty_workdir_has_nothing_to_resume(tmp_path):
  ckpts = checkpoint.Checkpoints(str(tmp_path))
  assert ckpts.latest_step() is None
  assert ckpts.restore_good(_state(0, steps=0), jax.random.key(0)) is None
  ckpts.close()


def test_best_is_the_lowest_in_min_mode(tmp_path):
  ckpts = checkpoint.Checkpoints(str(tmp_path), metric='dev_loss', mode='min')
  for step, loss in ((1, 0.4), (2, 0.2), (3, 0.9)):
    ckpts.save(_state(step, steps=1), jax.random.key(0), {}, {'dev_loss': loss}, step=step)
  assert ckpts.best_step() == 2
  assert ckpts.restore_params_good('best', _state(0, steps=0).params)[0] == 2
  ckpts.close()


def test_another_model_shape_is_refused_naming_the_parameters(tmp_path):
  ckpts = checkpoint.Checkpoints(str(tmp_path))
  ckpts.save(_state(0), jax.random.key(0), {}, {'dev_loss': 1.0})
  other = _state(0, steps=0).params
  other['dense']['kernel'] = np.zeros((3, 5), np.float32)
  other['dense']['extra'] = np.zeros(1, np.float32)
  with pytest.raises(CheckpointError) as err:
    ckpts.restore_params(3, other)
  message = str(err.value)
  assert 'another model shape (2 differ' in message
  assert "['dense']['kernel']: checkpoint (3, 2), this config (3, 5)" in message
  assert "['dense']['extra']: checkpoint missing, this config (1,)" in message
  assert ckpts.path(3) in message and 'Use the config it was trained with' in message
  ckpts.close()


def test_every_checkpoint_damaged_is_an_error_naming_them(tmp_path):
  ckpts = checkpoint.Checkpoints(str(tmp_path))
  for step in (1, 2):
    ckpts.save(_state(step, steps=1), jax.random.key(0), {}, {'dev_loss': 1.0}, step=step)
    with open(os.path.join(ckpts.path(step), integrity.MANIFEST), 'w') as f:
      f.write('not json')
  with pytest.raises(CheckpointError) as err:
    ckpts.restore_good(_state(0, steps=0), jax.random.key(0))
  message = str(err.value)
  assert 'every one is damaged (steps 2, 1; moved to' in message
  assert os.path.join(str(tmp_path), checkpoint.DAMAGED) in message
  assert sorted(os.listdir(os.path.join(str(tmp_path), checkpoint.DAMAGED))) == ['1', '2']
  ckpts.close()


def test_check_compatible_allows_only_the_resumable_keys():
  saved = {
    'model': {'hidden_size': 8, 'layers': (1, 2)},
    'train': {'epochs': 10, 'lr': 0.1},
    'checkpoint': {'keep_best': 3},
  }
  same = {
    'model': {'hidden_size': 8, 'layers': [1, 2]},  # a tuple comes back from JSON as a list
    'train': {'epochs': 50, 'lr': 0.1},
    'checkpoint': {'keep_best': 1},
  }
  workdir_lib.check_compatible(saved, same, 'config.json')
  changed = {
    **same,
    'model': {'hidden_size': 16},
    'extra': 1,
    'unset': None,
    'checkpoint': {},
  }
  with pytest.raises(CheckpointError) as err:
    workdir_lib.check_compatible(saved, changed, '/w/config.json')
  message = str(err.value)
  assert '(/w/config.json)' in message
  assert 'model.hidden_size: 8 in the workdir, 16 now' in message
  assert "extra: '<absent>' in the workdir, 1 now" in message
  assert "unset: '<absent>' in the workdir, None now" in message
  assert "model.layers: [1, 2] in the workdir, '<absent>' now" in message
  assert 'Use another --workdir, or the same values (only ' in message
  assert message.endswith(' may change on resume).')
  assert 'train.epochs: ' not in message and 'keep_best: ' not in message  # resumable


def test_flatten_and_shapes():
  assert workdir_lib._flatten({'a': {'b': {'c': 1}, 'd': 2}, 'e': 3}) == {
    'a.b.c': 1,
    'a.d': 2,
    'e': 3,
  }
  tree = {'w': np.zeros((2, 3)), 'n': 1.5}
  assert checkpoint._shapes(tree) == {"['n']": (), "['w']": (2, 3)}
