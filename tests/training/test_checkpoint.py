"""Checkpoints: a run SIGKILLed mid-training or mid-save resumes to bit-identical params.

The kills come from `bilstm_jax.faults` (BILSTM_JAX_FAULT), at exact points of the run.
"""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from bilstm_jax import app as train_lib
from bilstm_jax import errors, faults
from tests.utils import ROOT, TINY, load_state, tiny_config

# The kill test runs with every batch at full length, and with length buckets (ragged
# lengths, three bucket lengths, calls that group batches of one bucket).
VARIANTS = {'full_length': {}, 'buckets': {'data.buckets': 3, 'data.min_length': 1}}


def _start(workdir, variant='full_length', env=None):
  flags = [f'--config.{k}={v}' for k, v in {**TINY, **VARIANTS[variant]}.items()]
  env = {**os.environ, 'PYTHONPATH': ROOT, **(env or {})}
  cmd = [sys.executable, 'train.py', '--config', 'configs/default.py', '--workdir', workdir]
  return subprocess.Popen(
    cmd + flags, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
  )


def _listing(workdir):
  path = os.path.join(workdir, 'checkpoints')
  return os.listdir(path) if os.path.isdir(path) else []


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


def _killed(workdir, fault, variant):
  """Runs the run (or its resumption) until `faults` SIGKILLs it at `fault`."""
  proc = _start(workdir, variant, env={faults.ENV: fault})
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == -signal.SIGKILL, f'not killed at {fault}: {err.decode()[-2000:]}'
  return _listing(workdir)


@pytest.mark.subprocess
def test_sigkill_mid_training_then_mid_save_resumes_bit_identical(tmp_path, reference):
  workdir = str(tmp_path)
  variant = reference[2]
  # 1. Killed entering its 4th training call, with checkpoints after the first calls.
  at_kill = sorted(int(n) for n in _killed(workdir, 'step:4', variant) if n.isdigit())
  assert len(at_kill) >= 2 and at_kill[-1] < 12, at_kill
  # 2. The resumed run is killed inside its first save, before the save is committed.
  at_kill = _killed(workdir, 'commit:1', variant)
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
