"""evaluate / predict modes, export round trip, data-file errors, schedules, early stopping."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bilstm_jax import app as train_lib
from bilstm_jax import errors
from bilstm_jax.nn import native
from bilstm_jax.training import export, monitor, optim
from tests.utils import (
  ROOT,
  TINY,
  assert_predict_agrees,
  load_state,
  regression_task,
  tiny_config,
)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  summary = train_lib.train_and_evaluate(tiny_config(), workdir)
  return workdir, summary


def _write_jsonl(path, rows):
  with open(path, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows)


@pytest.mark.slow
def test_run_writes_its_layout(trained):
  workdir, summary = trained
  for name in (
    'config.json',
    'metrics.jsonl',
    'summary.json',
    'plots/loss.png',
    'plots/predictions.png',
    'export/predict.jaxexport',
  ):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  events = monitor.read_events(os.path.join(workdir, 'metrics.jsonl'))
  assert [e['event'] for e in events].count('hparams') == 1
  evals = [e for e in events if e['event'] == 'eval']
  assert [e['step'] for e in evals] == [4, 8, 12]
  assert all(e['steps_per_s'] > 0 and e['examples_per_s'] > 0 for e in evals)
  assert summary['steps'] == 12


@pytest.mark.subprocess
def test_evaluate_mode_prints_and_writes_json(trained):
  workdir, _ = trained
  flags = [f'--config.{k}={v}' for k, v in TINY.items()]
  cmd = [sys.executable, 'train.py', '--config', 'configs/default.py', '--workdir', workdir]
  out = subprocess.run(
    cmd + flags + ['--mode=evaluate', '--checkpoint=latest'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  with open(os.path.join(workdir, 'evaluate.json')) as f:
    assert json.load(f) == result
  with open(os.path.join(workdir, 'summary.json')) as f:
    final_dev = json.load(f)['final_dev_loss']
  assert result['step'] == 12 and result['data'] == 'dev'
  np.testing.assert_allclose(result['loss'], final_dev, rtol=1e-6)


@pytest.mark.slow
def test_predict_mode_jsonl_matches_the_model(trained, tmp_path):
  workdir, _ = trained
  cfg = tiny_config()
  rng = np.random.default_rng(0)
  seqs = [rng.normal(size=(n, 5)).astype(np.float32) for n in (6, 3, 1)]
  _write_jsonl(tmp_path / 'in.jsonl', [{'inputs': s.tolist()} for s in seqs])
  out = str(tmp_path / 'out.jsonl')
  # The generic tasks' records: index, length and the arrays cut to it, as load() gives.
  rows = assert_predict_agrees(workdir, str(tmp_path / 'in.jsonl'), out, 'latest', cfg)
  assert [r['length'] for r in rows] == [6, 3, 1] and [r['index'] for r in rows] == [0, 1, 2]
  state, _ = load_state(cfg, workdir, 'latest')
  for seq, row in zip(seqs, rows, strict=True):
    alone = state.apply_fn({'params': state.params}, seq[None], np.array([len(seq)]))
    np.testing.assert_allclose(row['predictions'], np.asarray(alone)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.subprocess
def test_export_round_trip_in_a_fresh_process(trained, tmp_path):
  workdir, _ = trained
  x = np.random.default_rng(1).normal(size=(3, 7, 5)).astype(np.float32)
  lengths = np.array([7, 4, 0], np.int32)
  np.savez(tmp_path / 'x.npz', inputs=x, lengths=lengths)
  script = (
    'import sys, numpy as np\n'
    'from jax import export\n'
    'fn = export.deserialize(bytearray(open(sys.argv[1], "rb").read()))\n'
    'd = np.load(sys.argv[2])\n'
    'np.save(sys.argv[3], np.asarray(fn.call(d["inputs"], d["lengths"])))\n'
  )
  path = os.path.join(workdir, 'export', export.FILENAME)
  subprocess.run(
    [sys.executable, '-c', script, path, str(tmp_path / 'x.npz'), str(tmp_path / 'y.npy')],
    cwd=str(tmp_path),
    check=True,
    timeout=120,
  )
  state, _ = load_state(tiny_config(), workdir, 'latest')
  got = np.load(tmp_path / 'y.npy')
  with native.disabled():  # what the export holds: the portable scan, bit for bit
    expect = state.apply_fn({'params': state.params}, x, lengths)
  np.testing.assert_array_equal(got, np.asarray(expect))
  # and the same numbers as the CPU kernel that `impl='auto'` runs here
  here = state.apply_fn({'params': state.params}, x, lengths)
  np.testing.assert_allclose(got, np.asarray(here), rtol=1e-5, atol=1e-6)


def test_bad_data_files_name_the_file_and_line(tmp_path):
  task = regression_task()
  with pytest.raises(errors.DataFileError, match=r'missing\.npz does not exist'):
    task.read(str(tmp_path / 'missing.npz'))
  (tmp_path / 'bad.jsonl').write_text('{"inputs": [[1, 2, 3, 4, 5]]}\n{"inputs": [[1, 2\n')
  with pytest.raises(errors.DataFileError, match=r'bad\.jsonl:2: not valid JSON'):
    task.read(str(tmp_path / 'bad.jsonl'), labelled=False)
  (tmp_path / 'garbage.npz').write_bytes(b'not a zip')
  with pytest.raises(errors.DataFileError, match=r'garbage\.npz is not a readable'):
    task.read(str(tmp_path / 'garbage.npz'))

  def inputs_only(name, features):
    path = str(tmp_path / name)
    np.savez(
      path, inputs=np.zeros((2, 3, features), np.float32), lengths=np.array([3, 1], np.int32)
    )
    return path

  with pytest.raises(errors.DataFileError, match=r'notargets\.npz has no "targets"'):
    task.read(inputs_only('notargets.npz', 5))
  with pytest.raises(errors.DataFileError, match=r'wide\.npz: inputs have 7 features'):
    task.read(inputs_only('wide.npz', 7), labelled=False)


def test_schedules_clipping_and_injected_rate():
  cfg = tiny_config(**{'optim.schedule': 'warmup_cosine', 'optim.warmup_steps': 2})
  rates = [
    optim.learning_rate_at(train_lib.optimizer_spec(cfg.optim), 10, 0.01, s) for s in (0, 1, 2, 10)
  ]
  np.testing.assert_allclose(rates, [0.0, 0.005, 0.01, 0.0], atol=1e-9)
  cfg = tiny_config(**{'optim.schedule': 'step', 'optim.decay_every_steps': 3})
  rates = [
    optim.learning_rate_at(train_lib.optimizer_spec(cfg.optim), None, 0.01, s) for s in (0, 2, 3, 6)
  ]
  np.testing.assert_allclose(rates, [0.01, 0.01, 0.001, 0.0001], rtol=1e-6)
  cfg = tiny_config(**{'optim.name': 'adamw', 'optim.weight_decay': 0.1})
  cfg.optim.grad_clip_norm = 1e-3
  tx = optim.make_optimizer(train_lib.optimizer_spec(cfg.optim))
  params = {'w': np.ones(3, np.float32)}
  state = tx.init(params)
  assert float(state.hyperparams['learning_rate']) == pytest.approx(0.01)
  # Clipped to norm 1e-3 before Adam: the update is Adam's, bounded by lr (1 + wd).
  updates, _ = tx.update({'w': np.full(3, 1e6, np.float32)}, state, params)
  assert np.all(np.abs(updates['w']) <= 0.01 * 1.1 + 1e-7)


def test_sgd_is_heavy_ball_momentum_on_the_l2_regularised_gradient():
  # A hand-written reference: v <- mu v + (g + wd w); w <- w - lr_t v, with the
  # warmup-cosine rate lr_t at each step.
  cfg = tiny_config(
    **{
      'optim.name': 'sgd',
      'optim.momentum': 0.8,
      'optim.weight_decay': 0.05,
      'optim.schedule': 'warmup_cosine',
      'optim.warmup_steps': 1,
    }
  )
  tx = optim.make_optimizer(train_lib.optimizer_spec(cfg.optim), total_steps=5)
  rng = np.random.default_rng(0)
  w = rng.normal(size=4).astype(np.float32)
  params, state = {'w': w}, tx.init({'w': w})
  ref, velocity = w.astype(np.float64), np.zeros(4)
  for step in range(5):
    grad = rng.normal(size=4).astype(np.float32)
    updates, state = tx.update({'w': grad}, state, params)
    params = {'w': params['w'] + updates['w']}
    velocity = 0.8 * velocity + grad + 0.05 * ref
    ref = (
      ref - optim.learning_rate_at(train_lib.optimizer_spec(cfg.optim), 5, 0.01, step) * velocity
    )
  np.testing.assert_allclose(params['w'], ref, rtol=1e-5, atol=1e-7)
  assert float(state.hyperparams['weight_decay']) == pytest.approx(0.05)
  with pytest.raises(ValueError, match='needs optim.name=adamw or sgd'):
    optim.make_optimizer(train_lib.optimizer_spec(tiny_config(**{'optim.weight_decay': 0.1}).optim))


@pytest.mark.slow
def test_early_stopping_with_patience(tmp_path):
  # A zero rate never improves the dev loss, so patience 1 stops at the second evaluation.
  cfg = tiny_config(**{'optim.learning_rate': 0.0, 'train.early_stopping_patience': 1})
  summary = train_lib.train_and_evaluate(cfg, str(tmp_path))
  assert summary['steps'] == 8
  assert [h['step'] for h in summary['history']] == [4, 8]
