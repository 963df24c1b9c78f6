"""The generic tasks learn generated problems from the user's own files, end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest

import bilstm_jax
from bilstm_jax import app
from configs import default
from tests.tasks import generated
from tests.utils import ROOT, assert_predict_agrees


def _config(task, train, dev, **overrides):
  cfg = default.get_config()
  cfg.data.task, cfg.data.train, cfg.data.dev = task, str(train), str(dev)
  cfg.model.hidden_size = 16
  cfg.train.batch_size = 16
  cfg.train.epochs = 12
  cfg.train.log_every_epochs = 12
  cfg.optim.learning_rate = 0.02
  for key, value in overrides.items():
    block, name = key.split('.')
    cfg[block][name] = value
  return cfg


def _files(tmp_path, kind, ext, num=384):
  make = getattr(generated, kind)
  train = generated.write(tmp_path / f'train{ext}', make(num, seed=0))
  dev = generated.write(tmp_path / f'dev{ext}', make(128, seed=1))
  return train, dev


@pytest.mark.slow
def test_tagging_learns_a_label_that_needs_both_directions(tmp_path):
  train, dev = _files(tmp_path, 'tagging', '.npz')
  bi = app.train_and_evaluate(_config('tagging', train, dev), str(tmp_path / 'bi'))
  uni = app.train_and_evaluate(
    _config('tagging', train, dev, **{'model.bidirectional': False}), str(tmp_path / 'uni')
  )
  # Chance is 25%; forward-only can be right about x[t-1] but must guess x[t+1].
  assert bi['final_dev_accuracy'] > 0.95, bi['final_dev_accuracy']
  assert uni['final_dev_accuracy'] < 0.65, uni['final_dev_accuracy']
  assert bi['task'] == 'tagging' and 'dev_target_variance' not in bi


@pytest.mark.slow
def test_classification_learns_a_label_of_the_whole_sequence(tmp_path):
  train, dev = _files(tmp_path, 'classification', '.jsonl', num=512)
  cfg = _config('classification', train, dev, **{'model.embed_size': 8, 'train.epochs': 15})
  cfg.train.log_every_epochs = 15
  summary = app.train_and_evaluate(cfg, str(tmp_path / 'run'))
  assert summary['final_dev_accuracy'] > 0.85, summary['final_dev_accuracy']  # chance: ~0.5
  spec = json.loads((tmp_path / 'run' / 'task.json').read_text())
  assert spec == {'task': 'classification', 'sizes': {'vocab_size': 6, 'num_classes': 2}}
  records = assert_predict_agrees(tmp_path / 'run', str(dev), tmp_path / 'p.jsonl')
  first = records[0]
  assert set(first) == {'index', 'length', 'label', 'probability', 'probabilities'}
  assert first['probability'] == max(first['probabilities']) and len(records) == 128


@pytest.mark.slow
def test_regression_from_files_with_buckets_and_metric_choice(tmp_path):
  train, dev = _files(tmp_path, 'regression', '.jsonl')
  cfg = _config(
    'regression', train, dev, **{'data.buckets': 3, 'train.metric': 'dev_mae', 'train.epochs': 8}
  )
  cfg.train.log_every_epochs = 4
  summary = app.train_and_evaluate(cfg, str(tmp_path / 'run'))
  assert summary['final_dev_loss'] < 0.05 * summary['dev_target_variance']
  assert [h['step'] for h in summary['history']] == [96, 192]  # 24 steps an epoch


@pytest.mark.subprocess
def test_cli_trains_evaluates_and_predicts_without_config_and_load_agrees(tmp_path):
  train, dev = _files(tmp_path, 'tagging', '.npz', num=64)
  workdir = str(tmp_path / 'run')
  base = [sys.executable, 'train.py', '--workdir', workdir]
  run = subprocess.run(
    [*base, '--config', 'default', '--config.data.task=tagging', f'--config.data.train={train}',
     f'--config.data.dev={dev}', '--config.train.epochs=2', '--config.train.log_every_epochs=1'],
    cwd=ROOT, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert run.returncode == 0, run.stderr[-3000:]
  assert 'Final loss train' in run.stdout and 'accuracy train' in run.stdout

  ev = subprocess.run([*base, '--mode=evaluate'], cwd=ROOT, capture_output=True, text=True)
  assert ev.returncode == 0, ev.stderr[-3000:]
  assert ev.stderr == ''  # no library warnings
  result = json.loads(ev.stdout.strip().splitlines()[-1])
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  np.testing.assert_allclose(result['accuracy'], summary['final_dev_accuracy'], rtol=1e-6)

  other = generated.write(tmp_path / 'other.jsonl', generated.tagging(9, seed=5))
  ev = subprocess.run(
    [*base, '--mode=evaluate', f'--config.data.test={other}'],
    cwd=ROOT, capture_output=True, text=True,
  )  # fmt: skip
  assert ev.returncode == 0 and json.loads(ev.stdout)['data'] == other

  out = str(tmp_path / 'preds.jsonl')
  pr = subprocess.run(
    [*base, '--mode=predict', f'--input={other}', f'--output={out}'],
    cwd=ROOT, capture_output=True, text=True,
  )  # fmt: skip
  assert pr.returncode == 0 and pr.stderr == '', pr.stderr[-3000:]
  with open(out) as f:
    rows = [json.loads(line) for line in f]
  assert rows == bilstm_jax.load(workdir).predict(other)  # the same records, one way
  preds = bilstm_jax.load(workdir).predict_arrays(other)
  for i, row in enumerate(rows):
    n = row['length']
    assert row['labels'] == preds['labels'][i, :n].tolist()
    np.testing.assert_allclose(row['confidence'], preds['confidence'][i, :n], rtol=1e-6)
  arrays = generated.tagging(9, seed=5)
  same = bilstm_jax.load(workdir).predict_arrays(
    {'inputs': arrays['inputs'], 'lengths': arrays['lengths']}
  )
  np.testing.assert_array_equal(same['labels'], preds['labels'][:, : same['labels'].shape[1]])
