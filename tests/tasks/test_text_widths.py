"""Width buckets on the text tasks: characters cut to each call's longest word change
nothing but the shapes (one model, a 'shuffled' ensemble, a SIGKILLed and resumed run)."""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import bilstm_jax
from bilstm_jax import app, errors, faults, tasks
from bilstm_jax.training import monitor
from configs import pos_ud
from tests.utils import ROOT

# A call per step, so calls differ in their longest word (with one call per length bucket,
# nearly every call holds the longest word of the data).
ON = {
  'data.width_buckets': 3,
  'train.steps_per_call': 1,
  'train.epochs': 3,
  'train.log_every_epochs': 1,
}
LOSSES = ('train_loss', 'dev_loss', 'dev_accuracy')


def _write(path: str, num: int, seed: int) -> str:
  """CoNLL-U of made-up words 1-16 letters long (most short); a word's tag is its length
  class, which only the characters tell."""
  rng = np.random.default_rng(seed)
  lines = []
  for _ in range(num):
    size = rng.integers(2, 7)
    lengths = np.minimum(16, rng.geometric(0.3, size))
    for j, n in enumerate(lengths, 1):
      word = ''.join(rng.choice(list('abcdefgh'), n))
      tag = 'LONG' if n > 5 else 'SHORT'
      lines.append(f'{j}\t{word}\t{word}\t{tag}\t{tag}\t_\t0\tdep\t_\t_')
    lines.append('')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  return path


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  d = tmp_path_factory.mktemp('widths')
  return _write(str(d / 'train.conllu'), 96, 0), _write(str(d / 'dev.conllu'), 24, 1)


def _config(corpus, variant='tiny', **overrides):
  cfg = pos_ud.get_config(variant)
  cfg.data.train, cfg.data.dev = corpus
  for key, value in {**ON, **overrides}.items():
    block, name = key.split('.')
    cfg[block][name] = value
  return cfg


def _eval_rows(workdir):
  return [e for e in monitor.read_events(f'{workdir}/metrics.jsonl') if e['event'] == 'eval']


def _chars_widths(cfg, workdir):
  """The `chars` width of each batch of epoch 1, as the program plans it."""
  _, prog, _, _ = app.prepare(cfg, workdir)
  batches, chunks = prog.epoch(1)
  widths = [b['chars'].shape[-1] for b in batches]
  for lo, hi in chunks:
    assert len(set(widths[lo:hi])) == 1  # one width per compiled call
  return widths


@pytest.mark.slow
def test_width_buckets_change_the_shapes_and_not_the_losses(corpus, tmp_path):
  summaries, rows = {}, {}
  for w in (3, 0):
    cfg = _config(corpus, **{'data.width_buckets': w})
    workdir = str(tmp_path / f'w{w}')
    summaries[w] = app.train_and_evaluate(cfg, workdir)
    rows[w] = _eval_rows(workdir)
  events = monitor.read_events(f'{tmp_path}/w3/metrics.jsonl')
  start = next(e for e in events if e['event'] == 'start')
  assert len(start['width_buckets']) == 3 and len(start['length_buckets']) == 2
  assert len(rows[3]) == len(rows[0]) >= 2
  for on, off in zip(rows[3], rows[0], strict=True):
    np.testing.assert_allclose([on[k] for k in LOSSES], [off[k] for k in LOSSES], rtol=1e-5)
  assert rows[0][0]['train_loss'] != rows[0][-1]['train_loss']  # it trains
  np.testing.assert_allclose(summaries[3]['final_dev_loss'], summaries[0]['final_dev_loss'], 1e-5)
  # The equality is not vacuous: calls ran narrower than the data.
  widths = _chars_widths(_config(corpus), str(tmp_path / 'plan'))
  full = tasks.from_config(_config(corpus)).fit('train').read('train')['chars'].shape[-1]
  assert min(widths) < max(widths) <= full
  assert set(_chars_widths(_config(corpus, **{'data.width_buckets': 0}), str(tmp_path))) == {full}


def test_width_buckets_need_a_task_with_a_width_axis(corpus, tmp_path):
  cfg = _config(corpus, **{'model.chars': ''})
  with pytest.raises(errors.ConfigError, match=r'config\.data\.width_buckets=3: needs a task'):
    app.prepare(cfg, str(tmp_path))
  with pytest.raises(errors.ConfigError, match=r'config\.data\.width_buckets=-1: must be >= 0'):
    app.prepare(_config(corpus, **{'data.width_buckets': -1}), str(tmp_path))


@pytest.mark.slow
def test_a_shuffled_ensemble_with_width_buckets_matches_one_without(corpus, tmp_path):
  losses = {}
  for w in (3, 0):
    cfg = _config(corpus, 'tiny_ensemble', **{'data.width_buckets': w, 'train.epochs': 2})
    cfg.ensemble.num_members, cfg.ensemble.data_mode = 2, 'shuffled'
    workdir = str(tmp_path / f'w{w}')
    summary = app.train_and_evaluate(cfg, workdir)
    assert summary['data_mode'] == 'shuffled'
    losses[w] = [r['member_train_loss'] + r['member_dev_loss'] for r in _eval_rows(workdir)]
  np.testing.assert_allclose(losses[3], losses[0], rtol=1e-5)
  assert len({x for row in losses[3] for x in row}) > 2  # the members differ
  # Each stacked step holds both members' rows at one width, which cuts no member's word:
  # the same steps at full width hold nothing beyond it.
  epochs = {}
  for w in (3, 0):
    cfg = _config(corpus, 'tiny_ensemble', **{'data.width_buckets': w, 'train.batch_size': 2})
    cfg.ensemble.num_members, cfg.ensemble.data_mode = 2, 'shuffled'
    epochs[w] = app.prepare(cfg, str(tmp_path / 'plan'))[1].epoch(1)
  assert epochs[3][1] == epochs[0][1]
  widths = [b['chars'].shape[-1] for b in epochs[3][0]]
  assert min(widths) < max(widths)
  for cut, full in zip(epochs[3][0], epochs[0][0], strict=True):
    w = cut['chars'].shape[-1]
    assert cut['chars'].shape[:2] == (2, 2)  # [members, batch, time, width]
    np.testing.assert_array_equal(cut['chars'], full['chars'][..., :w])
    assert not full['chars'][..., w:].any()
    # The smallest width that holds the widest word of either member.
    widest = (full['chars'] > 0).sum(-1).max()
    assert all(x < widest for x in set(widths) if x < w) and w >= widest


def _train_py(workdir, corpus, env=None):
  flags = [f'--config.{k}={v}' for k, v in {**ON, 'checkpoint.save_every_steps': 4}.items()]
  flags += [f'--config.data.train={corpus[0]}', f'--config.data.dev={corpus[1]}']
  cmd = [sys.executable, 'train.py', '--config=configs/pos_ud.py:tiny', f'--workdir={workdir}']
  env = {**os.environ, 'PYTHONPATH': ROOT, **(env or {})}
  return subprocess.run(cmd + flags, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigkill_and_resume_with_width_buckets_is_bit_identical(corpus, tmp_path):
  reference = str(tmp_path / 'reference')
  done = _train_py(reference, corpus)
  assert done.returncode == 0, done.stderr[-2000:]
  workdir = str(tmp_path / 'run')
  killed = _train_py(workdir, corpus, env={faults.ENV: 'step:7'})
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  resumed = _train_py(workdir, corpus)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  events = [e['event'] for e in monitor.read_events(f'{workdir}/metrics.jsonl')]
  assert 'resume' in events
  want = bilstm_jax.load(reference, 'latest').state.params
  got = bilstm_jax.load(workdir, 'latest').state.params
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_plan_is_a_pure_function_of_data_seed_and_epoch(corpus, tmp_path):
  cfg = _config(corpus)
  _, prog, _, _ = app.prepare(cfg, str(tmp_path / 'a'))
  _, again, _, _ = app.prepare(cfg, str(tmp_path / 'b'))
  for e in (1, 2):
    (x, cx), (y, cy) = prog.epoch(e), again.epoch(e)
    assert cx == cy and len(x) == len(y)
    for a, b in zip(x, y, strict=True):
      assert a['chars'].shape == b['chars'].shape
      np.testing.assert_array_equal(a['chars'], b['chars'])
  shapes = [[b['chars'].shape for b in prog.epoch(e)[0]] for e in (1, 2)]
  assert shapes[0] != shapes[1]  # each epoch its own order, and so its own widths
