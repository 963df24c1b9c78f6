"""Checkpoints: a run SIGKILLed mid-training or mid-save resumes to bit-identical params."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bilstm_jax import app as train_lib
from bilstm_jax import errors
from bilstm_jax.training import orbax_io
from tests.utils import ROOT, TINY, load_state, tiny_config

# The kill test runs with every batch at full length, and with length buckets (ragged
# lengths, three bucket lengths, calls that group batches of one bucket).
VARIANTS = {'full_length': {}, 'buckets': {'data.buckets': 3, 'data.min_length': 1}}


def _start(workdir, delay_s=0.0, variant='full_length', env=None):
  flags = [f'--config.{k}={v}' for k, v in {**TINY, **VARIANTS[variant]}.items()]
  env = {**os.environ, orbax_io.SAVE_DELAY_ENV: str(delay_s), 'PYTHONPATH': ROOT, **(env or {})}
  cmd = [sys.executable, 'train.py', '--config', 'configs/default.py', '--workdir', workdir]
  return subprocess.Popen(
    cmd + flags, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
  )


def _listing(workdir):
  path = os.path.join(workdir, 'checkpoints')
  return os.listdir(path) if os.path.isdir(path) else []


def _wait_for(proc, predicate, timeout=120.0):
  end = time.time() + timeout
  while time.time() < end:
    if predicate():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.005)
  return False


def _final_params(workdir, variant='full_length'):
  state, path = load_state(tiny_config(**VARIANTS[variant]), workdir, 'latest')
  return state.params, path


@pytest.fixture(scope='module', params=sorted(VARIANTS))
def reference(request, tmp_path_factory):
  """The uninterrupted run (in-process: same code, same compiled programs)."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  train_lib.train_and_evaluate(tiny_config(**VARIANTS[request.param]), workdir)
  return (*_final_params(workdir, request.param), request.param)


def _assert_same(a, b):
  flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
  flat_b = jax.tree_util.tree_leaves(b)
  assert len(flat_a) == len(flat_b)
  for (path, x), y in zip(flat_a, flat_b, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def _kill_when(workdir, predicate, delay_s, variant):
  """Starts the run (or its resumption) and SIGKILLs it when `predicate(listing)` holds."""
  proc = _start(workdir, delay_s, variant)
  hit = _wait_for(proc, lambda: predicate(_listing(workdir)))
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert hit, f'the run ended before the kill point: {proc.stderr.read().decode()[-2000:]}'
  return _listing(workdir)


@pytest.mark.subprocess
def test_sigkill_mid_training_then_mid_save_resumes_bit_identical(tmp_path, reference):
  workdir = str(tmp_path)
  variant = reference[2]
  # 1. Saves are slow (0.3 s each), training between them fast: killing as soon as the
  #    second checkpoint is complete lands between saves, in training or evaluation.
  at_kill = _kill_when(workdir, lambda names: sum(n.isdigit() for n in names) >= 2, 0.3, variant)
  assert sum(n.isdigit() for n in at_kill) >= 2
  # 2. The resumed run sleeps 3 s inside each save: kill it in its first one. Run 1 may
  #    itself have died inside a save, leaving a partial directory that run 2 deletes on
  #    start; only a partial directory seen after run 2 logged its resume is its own.
  metrics = os.path.join(workdir, 'metrics.jsonl')

  def in_own_save(names):
    with open(metrics) as f:
      resumed = any('"resume"' in line for line in f)
    return resumed and any('tmp' in n for n in names)

  at_kill = _kill_when(workdir, in_own_save, 3.0, variant)
  assert any('tmp' in n for n in at_kill), at_kill  # it died inside a save
  # 3. Resume again and finish.
  resumed = _start(workdir, variant=variant)
  _, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err.decode()[-3000:]
  assert not any('tmp' in n for n in _listing(workdir))  # the partial one is gone
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert sum('"resume"' in line for line in f) == 2
  params, path = _final_params(workdir, variant)
  assert os.path.basename(path) == os.path.basename(reference[1])
  _assert_same(reference[0], params)


@pytest.mark.slow
def test_incompatible_workdir_and_checkpoint_fail_clearly(tmp_path):
  workdir = str(tmp_path)
  train_lib.train_and_evaluate(tiny_config(**{'train.epochs': 1}), workdir)
  # Training longer is a resume; another model is not.
  with pytest.raises(errors.CheckpointError, match=r'model\.hidden_size: 4 in the workdir, 8 now'):
    train_lib.train_and_evaluate(tiny_config(**{'model.hidden_size': 8}), workdir)
  with pytest.raises(errors.CheckpointError, match=r'checkpoints/4 holds parameters of another'):
    load_state(tiny_config(**{'model.hidden_size': 8}), workdir)
  with pytest.raises(errors.CheckpointError, match='No checkpoints in'):
    load_state(tiny_config(), str(tmp_path / 'empty'))


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  # The rate grows by 1e30 after 4 steps: the first 4 steps are fine, then it diverges.
  cfg = tiny_config(
    **{
      'optim.schedule': 'step',
      'optim.decay_every_steps': 4,
      'optim.decay_rate': 1e30,
    }
  )
  with pytest.raises(errors.NonFiniteLossError, match=r'train loss is (nan|inf).*checkpoints/4'):
    train_lib.train_and_evaluate(cfg, str(tmp_path))
  state, path = load_state(cfg, str(tmp_path), 'latest')
  assert path.endswith('/4')
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
  assert (tmp_path / 'plots' / 'loss.png').exists()
