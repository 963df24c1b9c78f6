"""Ensembles: the vmapped population against independent single-model runs."""

import functools
import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bilstm_jax import app, errors, models
from bilstm_jax.ensembles import ensemble, hparams, population
from bilstm_jax.tasks import losses
from bilstm_jax.training import optim, program
from bilstm_jax.training import steps as train_lib
from configs import default
from tests.utils import (
  TINY,
  assert_predict_agrees,
  each_member_alone,
  regression_task,
  synthetic,
  tiny_config,
)

TASK = regression_task()

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HIDDEN, LAYERS, BATCH = 4, 2, 3


def _dataset(num=9, seq_len=6):
  cfg = default.get_config()
  cfg.data.num_train, cfg.data.seq_len, cfg.data.min_length = num, seq_len, 1
  return synthetic(cfg, 'train')


def _optim(lr=0.01):
  return optim.OptimizerSpec(name='adam', learning_rate=lr)


def _stacked_calls(dataset, members, shared, epochs=2):
  """[calls] of stacked batches: one call per epoch, all of its steps."""
  return [
    ensemble.stack_steps(
      ensemble.epoch_batches(dataset, members, BATCH, seed=0, epoch=e, shuffle=True), shared
    )
    for e in range(epochs)
  ]


@pytest.mark.parametrize('mode', ['shared', 'shuffled', 'bootstrap'])
def test_vmapped_ensemble_equals_independent_single_runs(mode):
  """Per-member lr, weight decay, init scale (and dropout, two layers: shared mode)."""
  n = 3
  hp = {
    'learning_rate': np.array([0.003, 0.01, 0.05], np.float32),
    'weight_decay': np.array([0.0, 0.1, 0.01], np.float32),
    'dropout': np.array([0.0, 0.2, 0.5] if mode == 'shared' else [0.0] * 3, np.float32),
    'init_scale': np.array([1.0, 0.5, 2.0], np.float32),
  }
  layers = LAYERS if mode == 'shared' else 1  # per-member data: compile one single model
  dataset = _dataset()
  members = ensemble.member_data(dataset, ensemble.member_indices(9, n, mode, seed=0))
  shared = members is None
  calls = _stacked_calls(dataset, members, shared)
  sample = {k: v[0] if shared else v[0, 0] for k, v in calls[0].items()}
  sample = TASK.model_inputs(sample)
  tx = optim.make_optimizer(_optim(), inject_weight_decay=True)
  init_keys, step_keys = ensemble.member_keys(5, n)

  per_member_dropout = bool(hp['dropout'].max() > 0)
  pop_model = models.BiLSTMRegressor(HIDDEN, num_layers=layers, dropout=float(hp['dropout'].max()))
  state = ensemble.create_members(init_keys, pop_model, tx, sample, hp)
  fn = ensemble.make_train_steps(TASK, shared, per_member_dropout)
  pop_sums = []
  for stacked in calls:
    state, sums = fn(state, stacked, step_keys, jnp.asarray(hp['dropout']))
    pop_sums.append(np.asarray(sums['loss_sum']))

  single_fn = jax.jit(functools.partial(train_lib.train_steps, task=TASK))
  for i in range(n):
    model = models.BiLSTMRegressor(HIDDEN, num_layers=layers, dropout=float(hp['dropout'][i]))
    one = train_lib.create_train_state(init_keys[i], model, tx, sample)
    one = ensemble.set_hparams(
      one, learning_rate=hp['learning_rate'][i], weight_decay=hp['weight_decay'][i]
    )
    one = ensemble.scale_params(one, hp['init_scale'][i])
    for c, stacked in enumerate(calls):
      batches = stacked if shared else {k: v[i] for k, v in stacked.items()}
      one, sums = single_fn(one, batches, step_keys[i])
      np.testing.assert_allclose(float(sums['loss_sum']), pop_sums[c][i], rtol=1e-5)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
      ensemble.export_params(state, i),
      jax.device_get(one.params),
    )
    steps_per_call = calls[0]['lengths'].shape[0 if shared else 1]
    assert int(state.step[i]) == int(one.step) == len(calls) * steps_per_call


@pytest.mark.parametrize('seed', [0, -5, 2**31 - 2, 3_000_000_000])
def test_member_keys_are_each_members_own_split(seed):
  init_keys, step_keys = ensemble.member_keys(seed, 3)
  for i in range(3):
    want = jax.random.split(jax.random.key(seed + i))
    np.testing.assert_array_equal(jax.random.key_data(init_keys[i]), jax.random.key_data(want[0]))
    np.testing.assert_array_equal(jax.random.key_data(step_keys[i]), jax.random.key_data(want[1]))


def test_members_and_keys_can_be_built_inside_a_callers_jit():
  model = models.BiLSTMRegressor(HIDDEN)
  tx = optim.make_optimizer(_optim(), inject_weight_decay=True)
  sample = (np.zeros((4, 6, 5), np.float32), np.full(4, 6, np.int32))

  def build():
    init_keys, _ = ensemble.member_keys(3, 2)
    return ensemble.create_members(init_keys, model, tx, sample, {'init_scale': np.ones(2)})

  inside = jax.jit(build)()
  outside = build()
  for a, b in zip(jax.tree.leaves(inside.params), jax.tree.leaves(outside.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


def test_learning_rates_make_members_diverge():
  dataset = _dataset()
  calls = _stacked_calls(dataset, None, True, epochs=3)
  sample = TASK.model_inputs({k: v[0] for k, v in calls[0].items()})
  model = models.BiLSTMRegressor(HIDDEN)
  key = jax.random.key(0)
  keys = jnp.stack([key, key, key])  # same init for all: only the learning rate differs
  lrs = np.array([0.01, 0.01, 0.1], np.float32)
  state = ensemble.create_members(
    keys, model, optim.make_optimizer(_optim()), sample, {'learning_rate': lrs}
  )
  np.testing.assert_array_equal(state.opt_state.hyperparams['learning_rate'], lrs)
  fn = ensemble.make_train_steps(TASK, donate=False)
  start = state
  for stacked in calls:
    state, _ = fn(state, stacked, jnp.stack([key] * 3), None)
  delta = jax.tree.map(
    lambda a, b: jnp.abs(a - b).reshape(3, -1).sum(1), state.params, start.params
  )
  moved = sum(jax.tree.leaves(delta))
  diff = [
    max(float(jnp.abs(p[0] - p[i]).max()) for p in jax.tree.leaves(state.params)) for i in (1, 2)
  ]
  assert diff[0] == 0.0  # same key, lr and data: identical
  assert diff[1] > 1e-2, diff  # ten times the lr: clearly elsewhere
  assert moved[2] > 3 * moved[0], moved


def test_bootstrap_subset_and_shuffled_members_see_different_data():
  boot = ensemble.member_indices(20, 4, 'bootstrap', seed=0)
  assert boot.shape == (4, 20) and boot.min() >= 0 and boot.max() < 20
  assert all(len(np.unique(b)) < 20 for b in boot)  # resampled with replacement
  assert len({tuple(b) for b in boot}) == 4
  subsets = ensemble.member_indices(20, 3, 'subsets', seed=0)
  assert subsets.shape == (3, 6) and len(np.unique(subsets)) == 18  # disjoint
  assert ensemble.member_indices(20, 3, 'shared', seed=0) is None
  with pytest.raises(ValueError, match='data mode'):
    ensemble.member_indices(20, 3, 'bagging', seed=0)

  dataset = _dataset(num=12)
  members = ensemble.member_data(dataset, ensemble.member_indices(12, 3, 'bootstrap', 0))
  first = ensemble.epoch_batches(dataset, members, BATCH, seed=0, epoch=1, shuffle=True)[0]
  assert first['inputs'].shape == (3, BATCH, 6, 5)
  x = first['inputs']
  assert not np.array_equal(x[0], x[1]) and not np.array_equal(x[1], x[2])

  # shuffled: every member holds every example (the dataset itself, not a copy), and the
  # member seeds put them in different orders.
  members = ensemble.member_data(dataset, ensemble.member_indices(12, 3, 'shuffled', 0))
  assert all(m is dataset for m in members)
  epoch = ensemble.epoch_batches(dataset, members, BATCH, seed=0, epoch=1, shuffle=True)
  x = np.stack([b['inputs'] for b in epoch], 1)  # [member, step, batch, time, features]
  assert not np.array_equal(x[0], x[1]) and not np.array_equal(x[1], x[2])
  for m in range(3):  # each member's epoch: the 12 examples once each
    rows = {tuple(r.ravel()) for r in x[m].reshape(-1, 6 * 5)}
    assert len(rows) == 12


def test_inference_members_mean_std_export_and_metrics():
  dataset = _dataset(num=5)
  model = models.BiLSTMRegressor(HIDDEN)
  init_keys, _ = ensemble.member_keys(0, 3)
  state = ensemble.create_members(
    init_keys, model, optim.make_optimizer(_optim()), TASK.model_inputs(dataset)
  )
  x, lengths = jnp.asarray(dataset['inputs']), jnp.asarray(dataset['lengths'])
  preds = ensemble.predict(state, dataset, TASK)
  assert preds.shape == (3, 5, 6, 1)
  for i in range(3):
    alone = model.apply({'params': ensemble.export_params(state, i)}, x, lengths)
    np.testing.assert_allclose(preds[i], alone, rtol=1e-6, atol=1e-6)
  summary = ensemble.mean_and_spread(preds)
  np.testing.assert_allclose(summary['mean'], np.mean(preds, 0), rtol=1e-6)
  np.testing.assert_allclose(summary['std'], np.std(preds, 0), rtol=1e-5, atol=1e-7)

  result = ensemble.evaluate(ensemble.make_eval_fn(TASK), state, dataset, 2, TASK)
  single = jax.jit(functools.partial(train_lib.eval_step, task=TASK))
  for i in range(3):
    alone = program.evaluate_dataset(single, ensemble.get_member(state, i), dataset, 2, TASK)
    np.testing.assert_allclose(result['member']['loss'][i], alone['loss'], rtol=1e-5)
  total, weight = losses.masked_mse(summary['mean'], dataset['targets'], dataset['lengths'])
  np.testing.assert_allclose(result['ensemble']['loss'], float(total / weight), rtol=1e-5)
  # Averaging predictions never does worse than the average member (convexity of MSE).
  assert result['ensemble']['loss'] <= result['member']['loss'].mean() + 1e-7


def test_probability_summary_averages_probabilities():
  logits = jnp.array([[[2.0, 0.0]], [[0.0, 2.0]], [[0.0, 0.0]]])  # [N=3, batch=1, C=2]
  out = ensemble.probability_summary(logits)
  p = jax.nn.softmax(logits, -1)
  np.testing.assert_allclose(out['mean_probs'], p.mean(0), rtol=1e-6)
  np.testing.assert_allclose(out['mean_probs'], [[0.5, 0.5]], rtol=1e-6)
  np.testing.assert_allclose(out['entropy'], [np.log(2.0)], rtol=1e-6)
  assert out['member_probs'].shape == (3, 1, 2)


def test_sample_hparams_ranges():
  ens = ml_collections.ConfigDict(
    {
      'num_members': 5,
      'learning_rate': (1e-4, 1e-1),
      'weight_decay': (0.0, 0.0),
      'dropout': (0.0, 0.5),
      'init_scale': (1.0, 1.0),
      'sampling': 'grid',
    }
  )

  def sample(ens, seed):
    ranges = {k: ens[k] for k in hparams.HPARAMS}
    return hparams.sample_hparams(ens.num_members, ranges, ens.sampling, seed)

  hp = sample(ens, seed=0)
  np.testing.assert_allclose(hp['learning_rate'][[0, -1]], [1e-4, 1e-1], rtol=1e-6)
  np.testing.assert_allclose(np.diff(np.log(hp['learning_rate'])), np.log(1000) / 4, rtol=1e-5)
  np.testing.assert_allclose(hp['dropout'], [0, 0.125, 0.25, 0.375, 0.5], rtol=1e-6)
  assert (hp['weight_decay'] == 0).all() and (hp['init_scale'] == 1).all()
  ens.sampling = 'random'
  lr = sample(ens, seed=1)['learning_rate']
  assert lr.min() >= 1e-4 and lr.max() <= 1e-1 and (np.diff(lr) > 0).all()
  ens.dropout = (0.2, 0.1)
  with pytest.raises(ValueError, match='low'):
    sample(ens, seed=0)


def test_member_ranges_default_to_the_configs_values_and_must_contain_them():
  cfg = tiny_config(**{'model.dropout': 0.2, 'optim.learning_rate': 0.05})
  default.seed_ensemble(cfg, 3)
  cfg.model.dropout = 0.3  # as a command line would, after the config is built
  ranges = hparams.member_ranges(cfg)
  assert ranges == {
    'learning_rate': (0.05, 0.05),
    'weight_decay': (0.0, 0.0),
    'dropout': (0.3, 0.3),
    'init_scale': (1.0, 1.0),
  }
  cfg.ensemble.dropout = (0.1, 0.4)  # an explicit range that contains model.dropout wins
  assert hparams.member_ranges(cfg)['dropout'] == (0.1, 0.4)
  cfg.ensemble.dropout = (0.1, 0.2)
  message = r'config\.model\.dropout=0\.3 lies outside config\.ensemble\.dropout=\(0\.1, 0\.2\)'
  with pytest.raises(errors.ConfigError, match=message):
    hparams.member_ranges(cfg)
  with pytest.raises(errors.ConfigError, match='config.model.dropout'):
    app.validate(cfg)
  # A trained run's ranges are what its members used: loading does not check them.
  assert hparams.member_ranges(cfg, check=False)['dropout'] == (0.1, 0.2)


def test_best_member_skips_diverged_and_table_formats():
  rows = [
    {'member': 0, 'learning_rate': 1.0, 'dev_loss': float('nan')},
    {'member': 1, 'learning_rate': 0.01, 'dev_loss': 0.5},
    {'member': 2, 'learning_rate': 0.1, 'dev_loss': 0.2},
  ]
  assert population.best_member(rows)['member'] == 2
  text = population.format_table(rows)
  assert text.splitlines()[0].split() == ['member', 'learning_rate', 'dev_loss']
  assert 'nan' in text


@pytest.mark.subprocess
def test_member_axis_sharded_over_two_devices():
  code = """
import jax, jax.numpy as jnp, numpy as np
from bilstm_jax import models
from bilstm_jax.ensembles import ensemble
from bilstm_jax.training import optim
from bilstm_jax.tasks import RegressionTask
import ml_collections
assert jax.device_count() == 2
b = {'inputs': np.ones((2, 3, 4, 5), np.float32), 'lengths': np.full((2, 3), 4, np.int32),
     'targets': np.zeros((2, 3, 4, 1), np.float32)}
tx = optim.make_optimizer(optim.OptimizerSpec(name='adam', learning_rate=0.1))
ik, sk = ensemble.member_keys(0, 4)
task = RegressionTask(sizes={'input_size': 5, 'output_size': 1})
s = ensemble.create_members(ik, models.BiLSTMRegressor(4), tx, (b['inputs'][0], b['lengths'][0]))
fn = ensemble.make_train_steps(task, donate=False)
ref, _ = fn(s, b, sk, None)
sh, sk2 = ensemble.shard_members((s, sk))
out, _ = fn(sh, b, sk2, None)
leaf = jax.tree.leaves(out.params)[0]
assert len(leaf.sharding.device_set) == 2, leaf.sharding
close = lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-6)
jax.tree.map(close, ref.params, out.params)
print('ok')
"""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', PYTHONPATH=ROOT)
  out = subprocess.run(
    [sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
  )
  assert out.returncode == 0 and 'ok' in out.stdout, out.stderr[-2000:]


def _tiny_sweep_config(hidden_sizes):
  from configs import sweep as sweep_config

  cfg = sweep_config.get_config()
  cfg.train.epochs, cfg.data.num_train, cfg.data.num_dev, cfg.data.seq_len = 1, 8, 4, 5
  cfg.train.batch_size = 4
  cfg.ensemble.num_members = 2
  cfg.sweep.hidden_size, cfg.sweep.num_layers = hidden_sizes, (1,)
  return cfg


@pytest.mark.slow
def test_sweep_writes_one_table_and_resumes(tmp_path):
  first = app.train_and_evaluate(_tiny_sweep_config((2,)), str(tmp_path))
  assert [r['shape'] for r in first['rows']] == ['hidden_size=2,num_layers=1'] * 2
  done = tmp_path / 'hidden_size=2,num_layers=1' / 'summary.json'
  stamp = done.stat().st_mtime_ns
  # The "interrupted" sweep resumes: the finished shape is not trained again.
  results = app.train_and_evaluate(_tiny_sweep_config((2, 3)), str(tmp_path))
  assert done.stat().st_mtime_ns == stamp
  assert [r['hidden_size'] for r in results['rows']] == [2, 2, 3, 3]
  assert set(results['shapes']) == {'hidden_size=2,num_layers=1', 'hidden_size=3,num_layers=1'}
  assert results['best']['dev_loss'] == min(r['dev_loss'] for r in results['rows'])
  other = _tiny_sweep_config((2,))
  other.train.epochs = 2
  with pytest.raises(errors.CheckpointError, match='another base config'):
    app.train_and_evaluate(other, str(tmp_path))


@pytest.mark.subprocess
def test_train_py_runs_a_sweep_config_and_refuses_to_evaluate_it(tmp_path):
  cmd = [sys.executable, 'train.py', '--config', 'configs/sweep.py', '--workdir', str(tmp_path)]
  cmd += ['--config.train.epochs=1', '--config.ensemble.num_members=2']
  cmd += ['--config.data.num_train=32', '--config.data.num_dev=16']
  cmd += ['--config.sweep.hidden_size=(2,)', '--config.sweep.num_layers=(1,)']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert '[sweep] best: hidden_size=2,num_layers=1' in out.stdout
  results = json.loads((tmp_path / 'results.json').read_text())
  assert [r['member'] for r in results['rows']] == [0, 1]
  out = subprocess.run([*cmd, '--mode=evaluate'], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode != 0 and 'a sweep config only trains' in out.stderr


@pytest.mark.subprocess
def test_train_py_trains_the_ensemble_config_and_prints_the_table(tmp_path):
  cmd = [sys.executable, 'train.py', '--config', 'configs/ensemble.py', '--workdir', str(tmp_path)]
  cmd += ['--config.train.epochs=2', '--config.ensemble.num_members=3']
  cmd += ['--config.data.num_train=32', '--config.data.num_dev=16']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'learning_rate' in out.stdout and 'Best member:' in out.stdout
  summary = json.loads((tmp_path / 'summary.json').read_text())
  rows = summary['members']
  assert [r['member'] for r in rows] == [0, 1, 2]
  assert all(1e-4 <= r['learning_rate'] <= 0.3 for r in rows)
  assert summary['best_member']['dev_loss'] == min(r['dev_loss'] for r in rows)
  assert np.isfinite(summary['ensemble_dev_loss'])


@pytest.mark.subprocess
def test_train_py_ensemble_members_use_the_command_lines_dropout_and_rate(tmp_path):
  """An ensemble variant's members take model.dropout and optim.learning_rate as the
  command line leaves them (the ranges were once copied before it was applied)."""
  from bilstm_jax.training import inference
  from tests.tasks import text_fixtures

  train = text_fixtures.write_conllu(str(tmp_path / 'train.conllu'), 40, 0)
  dev = text_fixtures.write_conllu(str(tmp_path / 'dev.conllu'), 10, 1)
  workdir = tmp_path / 'run'
  cmd = [sys.executable, 'train.py', '--config=configs/pos_ud.py:tiny_ensemble']
  cmd += [f'--workdir={workdir}', f'--config.data.train={train}', f'--config.data.dev={dev}']
  cmd += ['--config.train.epochs=1', '--config.ensemble.num_members=2']
  cmd += ['--config.model.dropout=0.25', '--config.optim.learning_rate=0.003']
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = json.loads((workdir / 'summary.json').read_text())['members']
  assert len(rows) == 2
  np.testing.assert_allclose([r['dropout'] for r in rows], [0.25, 0.25], rtol=1e-6)
  np.testing.assert_allclose([r['learning_rate'] for r in rows], [0.003, 0.003], rtol=1e-6)
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['ensemble']['dropout'] == [0.25, 0.25]  # the record says what was used
  assert inference.load(str(workdir)).task.model.dropout == 0.25
  # A workdir written before: ranges copied from the config file's values, which the
  # command line's model.dropout no longer matches. It loads with the ranges it holds.
  saved['ensemble'].update(dropout=[0.1, 0.1], learning_rate=[0.01, 0.01])
  (workdir / 'config.json').write_text(json.dumps(saved))
  trained = inference.load(str(workdir))
  assert trained.num_members == 2 and trained.task.model.dropout == 0.1
  assert np.isfinite(trained.evaluate('dev')['loss'])


# TINY (4 steps an epoch, 2 per compiled call, 3 epochs, a checkpoint every 2 steps), 4 members.
TINY_ENSEMBLE = {**TINY, 'ensemble.num_members': 4}


def _tiny_ensemble_config(**overrides):
  from configs import ensemble as ensemble_config

  return tiny_config(ensemble_config, **{**TINY_ENSEMBLE, **overrides})


@pytest.mark.subprocess
def test_ensemble_killed_mid_training_resumes_bit_identical(tmp_path):
  from bilstm_jax import faults

  reference = str(tmp_path / 'reference')
  expected = app.train_and_evaluate(_tiny_ensemble_config(), reference)

  workdir = str(tmp_path / 'killed')
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  flags = [f'--config.{k}={v}' for k, v in TINY_ENSEMBLE.items()]
  cmd = [sys.executable, 'train.py', '--config', 'configs/ensemble.py', '--workdir', workdir]
  env = {**os.environ, 'PYTHONPATH': ROOT}
  # Killed entering its 3rd training call: after two calls and their checkpoints.
  proc = subprocess.run(
    cmd + flags, cwd=ROOT, env={**env, faults.ENV: 'step:3'}, capture_output=True, timeout=300
  )
  assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
  at_kill = sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit())
  assert at_kill == [2, 4], at_kill

  resumed = subprocess.run(cmd + flags, cwd=ROOT, env=env, capture_output=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
  assert b'Best member:' in resumed.stdout
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    events = [json.loads(line) for line in f]
  assert [e['step'] for e in events if e['event'] == 'resume'] == [at_kill[-1]]

  cfg = _tiny_ensemble_config()
  step, state, rng, meta = app.load_latest(cfg, workdir)
  ref_step, ref_state, ref_rng, ref_meta = app.load_latest(cfg, reference)
  assert step == ref_step == 12 and meta['progress'] == ref_meta['progress']
  assert jax.tree.leaves(state.params)[0].shape[0] == 4
  same = np.testing.assert_array_equal
  train = lambda s: (s.params, s.opt_state, s.step)  # noqa: E731
  jax.tree.map(same, train(state), train(ref_state))
  same(jax.random.key_data(rng), jax.random.key_data(ref_rng))
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['members'] == expected['members']
  assert summary['best_member'] == expected['best_member']


@pytest.mark.slow
def test_ensemble_num_steps_and_early_stopping(tmp_path):
  # Learning rate 0: the dev losses never improve, so patience 1 stops at the second
  # evaluation (step 8), before train.num_steps (10) and without looking at train.epochs.
  cfg = _tiny_ensemble_config(
    **{
      'train.num_steps': 10,
      'train.early_stopping_patience': 1,
      'optim.learning_rate': 0.0,
      'ensemble.learning_rate': (0.0, 0.0),
      'checkpoint.save_every_steps': 0,
    }
  )
  summary = app.train_and_evaluate(cfg, str(tmp_path))
  assert summary['steps'] == 8
  evals = summary['history']
  assert [e['step'] for e in evals] == [4, 8]
  assert evals[0]['dev_loss'] == evals[1]['dev_loss'] == min(evals[0]['member_dev_loss'])
  assert len(evals[0]['member_train_loss']) == 4
  assert (tmp_path / 'checkpoints' / '8').is_dir()  # saved where it stopped
  assert (tmp_path / 'plots' / 'loss.png').exists()
  assert list((tmp_path / 'tensorboard').iterdir())


@pytest.mark.slow
def test_evaluate_and_predict_modes_on_an_ensemble_workdir(tmp_path):
  from bilstm_jax.training import inference

  cfg = _tiny_ensemble_config()
  summary = app.train_and_evaluate(cfg, str(tmp_path))
  result = app.evaluate(cfg, str(tmp_path), 'latest')
  np.testing.assert_allclose(
    result['member_loss'], [r['dev_loss'] for r in summary['members']], rtol=1e-6
  )
  np.testing.assert_allclose(result['loss'], summary['ensemble_dev_loss'], rtol=1e-6)

  out = str(tmp_path / 'preds.npz')
  app.predict(cfg, str(tmp_path), 'dev', out, 'latest')
  written = np.load(out)
  trained = inference.load(str(tmp_path), 'latest', cfg)
  # Each member on its own, as an ordinary single model; then mean and spread.
  singles = np.stack(each_member_alone(trained, trained.task.read('dev')))
  assert len(singles) == cfg.ensemble.num_members
  np.testing.assert_allclose(written['predictions'], singles.mean(0), atol=1e-6)
  np.testing.assert_allclose(written['predictions_std'], singles.std(0), atol=1e-6)
  assert written['predictions_std'].max() > 0  # members differ
  # Records of the combined predictions, spread included: the same through both paths.
  records = assert_predict_agrees(str(tmp_path), 'dev', tmp_path / 'p.jsonl', 'latest', cfg)
  n = records[0]['length']
  np.testing.assert_allclose(records[0]['predictions_std'], written['predictions_std'][0, :n])


@pytest.mark.subprocess
def test_bilstm_jax_load_registers_the_ensemble_kind_in_a_fresh_process(tmp_path):
  """training/ never imports ensembles/: bilstm_jax.load imports the module that registers
  how an ensemble's run loads; training.inference alone says what to import."""
  workdir = str(tmp_path)
  app.train_and_evaluate(_tiny_ensemble_config(**{'ensemble.num_members': 2}), workdir)
  code = """
import sys, bilstm_jax
trained = bilstm_jax.load(sys.argv[1])
print(type(trained).__name__, trained.num_members, sorted(trained.evaluate('dev'))[:2])
"""
  run = functools.partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, timeout=300)
  out = run([sys.executable, '-c', code, workdir])
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split()[:2] == ['TrainedEnsemble', '2'], out.stdout
  assert "['loss', 'mae']" in out.stdout, out.stdout
  code = 'import sys; from bilstm_jax.training import inference; inference.load(sys.argv[1])'
  out = run([sys.executable, '-c', code, workdir])
  assert out.returncode != 0 and 'import bilstm_jax.ensembles.trained' in out.stderr, out.stderr


def test_one_member_scan_ensemble_compiles_and_matches_a_single_run():
  """Regression: with unsigned scan step indices, XLA CPU failed to compile this program
  ('Failed to translate module to LLVM IR': an index computed as a float), at these shapes
  (bench_ensemble --configs small --members 1 --impl fused)."""
  b, t, i, h, k = 32, 50, 32, 64, 2
  rng = np.random.default_rng(0)
  batches = {
    'inputs': rng.standard_normal((k, b, t, i), dtype=np.float32),
    'lengths': np.full((k, b), t, np.int32),
    'targets': rng.standard_normal((k, b, t, 1), dtype=np.float32),
  }
  one = jax.tree.map(lambda x: x[0], batches)
  model = models.BiLSTMRegressor(h, impl='fused')
  tx = optim.make_optimizer(optim.OptimizerSpec(name='adam', learning_rate=1e-3))
  init_keys, step_keys = ensemble.member_keys(0, 1)
  state = ensemble.create_members(init_keys, model, tx, TASK.model_inputs(one))
  new, _ = ensemble.make_train_steps(TASK, donate=False)(state, batches, step_keys, None)
  single, _ = train_lib.train_steps(ensemble.get_member(state, 0), batches, step_keys[0], TASK)
  for a, s in zip(jax.tree.leaves(new.params), jax.tree.leaves(single.params), strict=True):
    np.testing.assert_allclose(a[0], s, rtol=1e-5, atol=1e-6)
