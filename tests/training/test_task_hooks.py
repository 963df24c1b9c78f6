"""The optional Task hooks through the app: `epoch_transform` (a fresh, seeded training
set each epoch) and `host_metrics` (dev metrics computed on the host from whole-dataset
outputs), for a single model and an ensemble, with a tiny task defined here."""

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
from typing import ClassVar

import jax
import numpy as np
import pytest

from bilstm_jax import app, faults, tasks
from bilstm_jax.ensembles import ensemble, population
from bilstm_jax.tasks import RegressionTask
from configs import ensemble as ensemble_config
from tests.training.test_checkpoint import _assert_same
from tests.utils import ROOT, TINY, tiny_config

TASK = 'tests.training.test_task_hooks:NoisyRegression'


@dataclasses.dataclass(frozen=True)
class NoisyRegression(RegressionTask):
  """The default config's synthetic regression with seeded input noise each epoch, and the
  dev MSE computed again on the host (negated, so a larger value is better)."""

  host_metric_modes: ClassVar[dict] = {'neg_mse': 'max'}
  # (seed, epoch, examples, digest of the inputs) of every epoch_transform call.
  calls: ClassVar[list] = []

  @classmethod
  def from_config(cls, config):
    d = config.data
    task = super().from_config(config)  # data.task names this class: no generator
    gen = {
      'name': 'bidir_window',
      'num': {'train': d.num_train, 'dev': d.num_dev},
      'seq_len': d.seq_len,
      'input_size': d.input_size,
      'output_size': d.output_size,
      'seed': d.seed,
      'min_length': d.get('min_length'),
    }
    return dataclasses.replace(task, synthetic=gen)

  def epoch_transform(self, train_set, seed, epoch):
    rng = np.random.default_rng([seed, 11, epoch])
    noise = rng.normal(scale=0.1, size=train_set['inputs'].shape).astype(np.float32)
    out = {**train_set, 'inputs': train_set['inputs'] + noise}
    digest = hashlib.sha1(out['inputs'].tobytes()).hexdigest()
    self.calls.append((seed, epoch, len(train_set['lengths']), digest))
    return out

  def host_metrics(self, dataset, outputs):
    targets = dataset['targets']
    real = np.arange(targets.shape[1])[None, :] < dataset['lengths'][:, None]
    err = (np.asarray(outputs, np.float64) - targets) ** 2
    return {'neg_mse': -float(err[real].mean())}


def _task_class():
  """The class the app loaded (the module it imported, whatever pytest imported)."""
  return tasks.task_class(TASK)


def _config(module=None, **overrides):
  args = (module,) if module else ()
  return tiny_config(*args, **{'data.task': TASK, **overrides})


def _evals(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [e for e in map(json.loads, f) if e['event'] == 'eval']


def _best_checkpoint(summary):
  return int(os.path.basename(summary['best_checkpoint']))


def test_single_model_transforms_each_epoch_and_ranks_by_the_host_metric(tmp_path):
  calls = _task_class().calls
  calls.clear()
  config = _config(**{'train.metric': 'dev_neg_mse', 'train.metric_mode': 'max'})
  summary = app.train_and_evaluate(config, str(tmp_path / 'noisy'))
  assert [c[1] for c in calls] == [1, 2, 3]  # each epoch once, in order
  assert {c[0] for c in calls} == {config.seed} and {c[2] for c in calls} == {32}
  plain = app.load_task_data(config)[1]['inputs']
  digests = {c[3] for c in calls} | {hashlib.sha1(plain.tobytes()).hexdigest()}
  assert len(digests) == 4  # every epoch its own data, none the untransformed set
  evals = _evals(str(tmp_path / 'noisy'))
  for e in evals:  # the host's MSE of the whole dev set's outputs is the device's
    np.testing.assert_allclose(-e['dev_neg_mse'], e['dev_loss'], rtol=1e-4)
  best = max(evals, key=lambda e: e['dev_neg_mse'])
  assert _best_checkpoint(summary) == best['step']
  # The transform reaches training: without it the same run ends elsewhere.
  without = tiny_config(**{'train.metric': 'dev_loss'})
  plain_summary = app.train_and_evaluate(without, str(tmp_path / 'plain'))
  assert plain_summary['final_train_loss'] != summary['final_train_loss']


@pytest.mark.parametrize('data_mode', ['shared', 'bootstrap'])
def test_ensemble_transforms_once_per_epoch_and_ranks_by_the_host_metric(tmp_path, data_mode):
  calls = _task_class().calls
  calls.clear()
  config = _config(
    ensemble_config,
    **{
      'ensemble.num_members': 3,
      'ensemble.data_mode': data_mode,
      'train.metric': 'ensemble_dev_neg_mse',
      'train.metric_mode': 'max',
    },
  )
  summary = app.train_and_evaluate(config, str(tmp_path))
  # One draw per epoch, of the whole training set, shared by the members.
  assert [c[1] for c in calls] == [1, 2, 3]
  assert {c[0] for c in calls} == {config.seed} and {c[2] for c in calls} == {32}
  assert len({c[3] for c in calls}) == 3
  evals = _evals(str(tmp_path))
  for e in evals:  # computed on the combined output, as ensemble_dev_loss is
    np.testing.assert_allclose(-e['ensemble_dev_neg_mse'], e['ensemble_dev_loss'], rtol=1e-4)
  best = max(evals, key=lambda e: e['ensemble_dev_neg_mse'])
  assert _best_checkpoint(summary) == best['step']


def test_members_take_their_rows_of_the_transformed_set():
  config = _config()
  task, train_set, _ = app.load_task_data(config)
  data = population._MemberData(task, train_set, 3, 'bootstrap', seed=5)
  indices = ensemble.member_indices(32, 3, 'bootstrap', 5)
  full = task.epoch_transform(train_set, 5, 2)
  sets = data.epoch(2)
  assert len(sets) == 3
  for i, member in enumerate(sets):
    for key, value in full.items():
      np.testing.assert_array_equal(member[key], value[indices[i]], err_msg=key)
  assert not np.array_equal(sets[0]['inputs'], data.epoch(3)[0]['inputs'])


@pytest.mark.subprocess
def test_killed_and_resumed_with_a_transform_ends_bit_identical(tmp_path):
  reference = str(tmp_path / 'reference')
  app.train_and_evaluate(_config(), reference)
  workdir = str(tmp_path / 'killed')
  flags = [f'--config.{k}={v}' for k, v in {**TINY, 'data.task': TASK}.items()]
  cmd = [sys.executable, 'train.py', '--config', 'configs/default.py', '--workdir', workdir]
  env = {**os.environ, 'PYTHONPATH': ROOT}
  # Killed entering its 4th call: in epoch 2, which the resumed run transforms again.
  killed = subprocess.run(
    cmd + flags, cwd=ROOT, env={**env, faults.ENV: 'step:4'}, capture_output=True, timeout=300
  )
  assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
  resumed = subprocess.run(cmd + flags, cwd=ROOT, env=env, capture_output=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    resumes = [e for e in map(json.loads, f) if e['event'] == 'resume']
  assert [(e['epoch'], e['batch']) for e in resumes] == [(2, 2)]
  step, state, rng, _ = app.load_latest(_config(), workdir)
  ref_step, ref_state, ref_rng, _ = app.load_latest(_config(), reference)
  assert step == ref_step == 12
  _assert_same(ref_state.params, state.params)
  _assert_same(ref_state.opt_state, state.opt_state)
  np.testing.assert_array_equal(jax.random.key_data(rng), jax.random.key_data(ref_rng))
