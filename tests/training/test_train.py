"""Training step, loop and train.py entry point."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bilstm_jax import app, models
from bilstm_jax.data import batching as data
from bilstm_jax.tasks import losses
from bilstm_jax.training import optim, program
from bilstm_jax.training import steps as train_lib
from configs import default
from tests.utils import regression_task, synthetic

TASK = regression_task()
STEP = functools.partial(train_lib.train_step, task=TASK)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _state_and_batch(num_layers=2, dropout=0.0):
  cfg = default.get_config()
  cfg.data.num_train = 4
  batch = next(data.batches(synthetic(cfg, 'train'), 4, shuffle=False))
  batch['lengths'] = np.array([10, 7, 1, 0], np.int32)
  model = models.BiLSTMRegressor(hidden_size=4, num_layers=num_layers, dropout=dropout)
  tx = optim.make_optimizer(app.optimizer_spec(cfg.optim))
  inputs = (batch['inputs'], batch['lengths'])
  return train_lib.create_train_state(jax.random.key(0), model, tx, inputs), batch


def test_one_jitted_step_changes_every_parameter():
  state, batch = _state_and_batch()
  new, metrics = jax.jit(STEP)(state, batch, jax.random.key(1))
  assert int(new.step) == 1
  assert np.isfinite(metrics['loss'])
  changed = jax.tree.map(lambda a, b: bool(jnp.all(a != b)), state.params, new.params)
  flat = jax.tree_util.tree_flatten_with_path(changed)[0]
  assert all(ok for _, ok in flat), [jax.tree_util.keystr(p) for p, ok in flat if not ok]


def test_create_train_state_inside_jit_and_with_run_once_options():
  state, batch = _state_and_batch()
  model, tx = models.BiLSTMRegressor(hidden_size=4, num_layers=2), state.tx
  # Inside a caller's jit (where JAX refuses compiler options on the inner jit).
  inputs = (batch['inputs'], batch['lengths'])
  inner = jax.jit(lambda k: train_lib.create_train_state(k, model, tx, inputs).params)
  once = train_lib.create_train_state(jax.random.key(0), model, tx, inputs, train_lib.RUN_ONCE)
  trees = (state.params, inner(jax.random.key(0)), once.params)
  for a, b, c in zip(*map(jax.tree.leaves, trees), strict=True):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-7)  # last-bit differences only
    np.testing.assert_allclose(c, a, rtol=0, atol=1e-7)


@pytest.mark.parametrize('seed', [0, -5, 2**31 + 5, 3_000_000_000])
def test_key_seed_gives_a_jitted_program_the_key_of_the_python_seed(seed):
  inside = jax.jit(lambda s: jax.random.key_data(jax.random.key(s)))(train_lib.key_seed(seed))
  np.testing.assert_array_equal(inside, jax.random.key_data(jax.random.key(seed)))


def test_train_steps_equals_repeated_train_step():
  state, batch = _state_and_batch()
  stacked = data.stack([batch, batch, batch])
  rng = jax.random.key(3)
  many, sums = jax.jit(functools.partial(train_lib.train_steps, task=TASK))(state, stacked, rng)
  step = jax.jit(STEP)
  one, total = state, 0.0
  for _ in range(3):
    one, m = step(one, batch, rng)
    total += float(m['loss_sum'])
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), one.params, many.params
  )
  np.testing.assert_allclose(float(sums['loss_sum']), total, rtol=1e-6)


def test_dropout_differs_per_step_and_is_seeded():
  """Dropout draws from fold_in(rng, state.step): the same rng and step give the same masks,
  another step (same parameters) or another rng give other masks."""
  state, batch = _state_and_batch(dropout=0.5)
  step = jax.jit(STEP)
  key = jax.random.key(0)
  later = state.replace(step=state.step + 5)  # the same parameters, five steps on

  def loss(state, rng):
    return float(step(state, batch, rng)[1]['loss'])

  assert loss(state, key) == loss(state, key)
  assert loss(state, key) != loss(later, key)
  assert loss(state, key) != loss(state, jax.random.key(1))
  # The step's loss is the model's with the masks of fold_in(key, step), drawn by hand.
  for s in (state, later):
    outputs, _ = train_lib.apply_model(s, s.params, batch, TASK, jax.random.fold_in(key, s.step))
    total, weight = TASK.loss(outputs, batch)
    np.testing.assert_allclose(loss(s, key), float(total / weight), rtol=1e-6)
  outputs, _ = train_lib.apply_model(state, state.params, batch, TASK)  # dropout off
  total, weight = TASK.loss(outputs, batch)
  assert abs(loss(state, key) - float(total / weight)) > 1e-4


def test_masked_mse_ignores_padding_and_matches_mean():
  preds = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5, 2)), jnp.float32)
  targets = jnp.zeros_like(preds)
  lengths = jnp.array([5, 2, 0])
  total, weight = losses.masked_mse(preds, targets, lengths)
  expect = float((preds[0] ** 2).sum() + (preds[1, :2] ** 2).sum())
  np.testing.assert_allclose(float(total), expect, rtol=1e-6)
  assert float(weight) == (5 + 2) * 2


def test_evaluate_is_exact_with_short_last_batch():
  cfg = default.get_config()
  cfg.data.num_dev = 7
  dev = synthetic(cfg, 'dev')
  state, _ = _state_and_batch()
  fn = jax.jit(functools.partial(train_lib.eval_step, task=TASK))
  whole = program.evaluate_dataset(fn, state, dev, 7, TASK)
  split = program.evaluate_dataset(fn, state, dev, 3, TASK)
  np.testing.assert_allclose(whole['loss'], split['loss'], rtol=1e-6)
  np.testing.assert_allclose(whole['mae'], split['mae'], rtol=1e-6)


def _json(path):
  with open(path) as f:
    return json.load(f)


def _run_train(workdir, *overrides, check=True):
  cmd = [sys.executable, 'train.py', '--config', 'configs/default.py', '--workdir', str(workdir)]
  return subprocess.run(
    cmd + list(overrides), cwd=ROOT, capture_output=True, text=True, check=check, timeout=300
  )


@pytest.mark.subprocess
def test_default_config_learns_and_forward_only_does_not(tmp_path):
  """The acceptance run of the default config: both directions are needed."""
  bi = _run_train(tmp_path / 'bi')
  losses_bi = [json.loads(x) for x in (tmp_path / 'bi' / 'metrics.jsonl').read_text().splitlines()]
  evals = [e['train_loss'] for e in losses_bi if e['event'] == 'eval']
  assert [e['epoch'] for e in losses_bi if e['event'] == 'eval'] == [10, 20, 30, 40, 50]
  assert all(b < a for a, b in zip(evals, evals[1:], strict=False)), evals
  summary = _json(tmp_path / 'bi' / 'summary.json')
  assert summary['dev_loss_over_variance'] < 0.1, summary
  assert 'Final MSE' in bi.stdout and 'Predictions vs targets' in bi.stdout
  for name in ('config.json', 'metrics.jsonl', 'summary.json'):
    assert (tmp_path / 'bi' / name).exists()

  _run_train(tmp_path / 'uni', '--config.model.bidirectional=False')
  uni = _json(tmp_path / 'uni' / 'summary.json')
  assert uni['dev_loss_over_variance'] > 0.5, uni
  assert uni['final_dev_loss'] > 50 * summary['final_dev_loss']


def test_seed_noise_is_the_tutorials_data(tmp_path):
  cfg = default.get_config()
  cfg.data.task = 'seed_noise'
  d = synthetic(cfg, 'train')
  assert d['inputs'].shape == (16, 10, 5) and d['targets'].shape == (16, 10, 1)
  assert abs(d['inputs'].mean()) < 0.2 and abs(d['inputs'].std() - 1) < 0.1


@pytest.mark.subprocess
def test_unknown_config_key_fails_clearly(tmp_path):
  out = _run_train(tmp_path, '--config.model.hidden_sise=4', check=False)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines() == [
    "Error: a --config override: no config key 'hidden_sise' (did you mean 'hidden_size'?)"
  ]
  assert not tmp_path.exists() or not any(tmp_path.iterdir())
