"""Faults: damaged checkpoints, a full disk, an unwritable workdir, kills inside phases."""

import errno
import glob
import logging
import os
import shutil
import signal

import jax
import numpy as np
import pytest

import bilstm_jax
from bilstm_jax import app as train_lib
from bilstm_jax import errors, faults
from bilstm_jax.training import checkpoint, integrity, monitor, orbax_io
from tests.training.test_checkpoint import _assert_same, _start
from tests.utils import tiny_config


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """A finished tiny run (checkpoints 8, 10, 12) and its final params."""
  workdir = str(tmp_path_factory.mktemp('finished'))
  train_lib.train_and_evaluate(tiny_config(), workdir)
  return workdir, bilstm_jax.load(workdir, 'latest').state.params


def test_loading_a_run_logs_no_read_only_warnings(finished, caplog):
  # Orbax warns whenever a manager opens read-only, as every load for prediction does.
  with caplog.at_level(logging.WARNING, logger='absl'):
    bilstm_jax.load(finished[0])
  assert not [r.getMessage() for r in caplog.records if 'read' in r.getMessage().lower()]


def _copy(finished, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished[0], workdir)
  return workdir


def _truncate_data(step_dir):
  files = glob.glob(os.path.join(step_dir, '*', '**', 'd', '*'), recursive=True)
  assert files
  for path in files:
    os.truncate(path, 7)


def _flip_a_byte(step_dir):
  path = sorted(glob.glob(os.path.join(step_dir, 'params', '**', 'd', '*'), recursive=True))[0]
  with open(path, 'r+b') as f:
    data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    f.seek(0)
    f.write(data)


def _bad_metrics(step_dir):
  with open(os.path.join(step_dir, 'metrics', 'metrics'), 'w') as f:
    f.write('{"dev_loss": ')


DAMAGE = {'truncated': _truncate_data, 'flipped_byte': _flip_a_byte, 'bad_metrics': _bad_metrics}


@pytest.mark.slow
def test_damaged_newest_checkpoint_is_skipped_with_a_warning(finished, tmp_path, capsys):
  for damage in sorted(DAMAGE):
    workdir = _copy(finished, tmp_path / damage)
    bad = os.path.join(workdir, 'checkpoints', '12')
    DAMAGE[damage](bad)
    trained = bilstm_jax.load(workdir, 'latest')
    assert trained.checkpoint.endswith('/10'), damage
    assert f'Warning: checkpoint {bad} is damaged' in capsys.readouterr().err, damage
    assert os.path.isdir(bad)  # loading (read-only) leaves the workdir as it was
  # Resuming falls back to 10, moves 12 aside and trains it again: the same params.
  train_lib.train_and_evaluate(tiny_config(), workdir)
  assert f'Warning: checkpoint {bad} is damaged' in capsys.readouterr().err
  assert os.path.isdir(os.path.join(workdir, checkpoint.DAMAGED, '12'))
  _assert_same(finished[1], bilstm_jax.load(workdir, 'latest').state.params)
  assert os.path.exists(os.path.join(bad, integrity.MANIFEST))


@pytest.mark.slow
def test_flipped_byte_deserialises_so_only_the_manifest_catches_it(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  step_dir = os.path.join(workdir, 'checkpoints', '12')
  _flip_a_byte(step_dir)
  os.remove(os.path.join(step_dir, integrity.MANIFEST))
  params = bilstm_jax.load(workdir, 'latest').state.params  # orbax alone: no error
  leaves = zip(jax.tree.leaves(params), jax.tree.leaves(finished[1]), strict=True)
  assert any(not np.array_equal(a, b) for a, b in leaves)


@pytest.mark.slow
def test_every_checkpoint_damaged_is_one_error_naming_the_workdir(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  for step_dir in glob.glob(os.path.join(workdir, 'checkpoints', '*')):
    _truncate_data(step_dir)
  with pytest.raises(errors.CheckpointError, match=f'No usable checkpoint in {workdir}: every'):
    bilstm_jax.load(workdir)
  with pytest.raises(errors.CheckpointError, match=r'steps 12, 10, 8; moved to'):
    train_lib.train_and_evaluate(tiny_config(), workdir)


@pytest.mark.slow
@pytest.mark.parametrize('where', ['orbax_write', 'manifest'])
def test_full_disk_is_one_error_and_keeps_the_last_good_checkpoint(
  finished, tmp_path, monkeypatch, where
):
  def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'checkpoint 6')

  async def no_space_async(*args, **kwargs):
    no_space()

  # Checkpoints 2 and 4 are written; 6 fails inside orbax's save (the meta item's write)
  # or after orbax committed it (the manifest).
  calls = []
  original = checkpoint.Checkpoints.save

  def save(self, state, rng, meta, metrics, step=None):
    calls.append(step)
    if len(calls) == 3:
      if where == 'manifest':
        monkeypatch.setattr(integrity, 'write_manifest', no_space)
      else:
        monkeypatch.setattr(orbax_io.MetaHandler, '_save_fn', no_space_async)
    return original(self, state, rng, meta, metrics, step)

  monkeypatch.setattr(checkpoint.Checkpoints, 'save', save)
  workdir = str(tmp_path / 'run')
  message = r'No space left on device while saving checkpoint 6 to .*/checkpoints/6 .*/4, kept'
  with pytest.raises(errors.CheckpointError, match=message):
    train_lib.train_and_evaluate(tiny_config(), workdir)
  listing = os.listdir(os.path.join(workdir, 'checkpoints'))
  assert sorted(n for n in listing if n.isdigit()) == ['2', '4']  # 6 is not a checkpoint
  assert bilstm_jax.load(workdir, 'latest').checkpoint.endswith('/4')
  if where == 'manifest':
    return  # resuming is the same as below
  monkeypatch.undo()
  train_lib.train_and_evaluate(tiny_config(), workdir)  # room again: resumes and finishes
  assert not [n for n in os.listdir(os.path.join(workdir, 'checkpoints')) if 'tmp' in n]
  _assert_same(finished[1], bilstm_jax.load(workdir, 'latest').state.params)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0, reason='root ignores file modes')
def test_unwritable_workdir_is_one_error(finished, tmp_path):
  workdir = _copy(finished, tmp_path)
  fresh = tmp_path / 'fresh'
  fresh.mkdir()
  for path in (workdir, str(fresh)):
    os.chmod(path, 0o500)
  try:
    with pytest.raises(errors.RunError, match=f'Cannot write {workdir}/config.json: Permission'):
      train_lib.train_and_evaluate(tiny_config(**{'train.epochs': 4}), workdir)
    with pytest.raises(errors.RunError, match=f'Cannot write {fresh}/.lock: Permission denied'):
      train_lib.train_and_evaluate(tiny_config(), str(fresh))
  finally:
    for path in (workdir, str(fresh)):
      os.chmod(path, 0o700)
  _assert_same(finished[1], bilstm_jax.load(workdir, 'latest').state.params)


@pytest.mark.subprocess
@pytest.mark.slow
def test_kills_inside_eval_export_and_plot_resume_bit_identical(finished, tmp_path):
  workdir = str(tmp_path)
  # Each start dies inside the phase named (a delay into it); the next one resumes.
  # (test_checkpoint.py kills mid-training and mid-save; benchmarks/faults.py does every
  # phase, many times.) The export kill comes after the last checkpoint, the plot kill in
  # a start that resumed from it.
  for fault in ('eval:2:0', 'export:1:0.05', 'plot:1:0.02'):
    proc = _start(workdir, env={faults.ENV: fault})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, (fault, err.decode()[-2000:])
    phase, nth, delay = fault.split(':')
    assert f'SIGKILL {float(delay)} s into {phase} #{nth}' in err.decode()
  events = [e['event'] for e in monitor.read_events(os.path.join(workdir, 'metrics.jsonl'))]
  assert events.count('resume') == 2
  _assert_same(finished[1], bilstm_jax.load(workdir, 'latest').state.params)


@pytest.mark.slow
def test_a_bug_while_restoring_is_not_taken_for_damage(finished, tmp_path, monkeypatch):
  workdir = _copy(finished, tmp_path)

  def broken(*args, **kwargs):
    raise AttributeError('a bug, not damage')

  monkeypatch.setattr(checkpoint.Checkpoints, 'restore', broken)
  with pytest.raises(AttributeError, match='a bug'):
    train_lib.train_and_evaluate(tiny_config(), workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['10', '12', '8']
  assert not os.path.exists(os.path.join(workdir, checkpoint.DAMAGED))


def test_storage_errors_are_named_from_oserrors_and_tensorstore_text():
  # tensorstore reports a full disk as a ValueError carrying the OS's text (seen on a tmpfs)
  full = ValueError(
    'RESOURCE_EXHAUSTED: Error writing "head.kernel/0.0" in OCDBT database at local file '
    '"/w/checkpoints/6.orbax-checkpoint-tmp/params.orbax-checkpoint-tmp/ocdbt.process_0/": '
    "Failed to write 237 bytes to file 24: No space left on device [os_error_code='28']"
  )
  assert integrity.storage_reason(full) == 'No space left on device'
  try:
    try:
      raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), '/w/checkpoints')
    except OSError as e:
      raise RuntimeError('wrapped') from e
  except RuntimeError as e:
    assert integrity.storage_reason(e) == os.strerror(errno.EACCES)
  assert integrity.storage_reason(ValueError('OUT_OF_RANGE: byte range [0, 987)')) is None
