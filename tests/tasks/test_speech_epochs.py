"""Speech augmentation drawn afresh every epoch (`epoch_transform`), on generated tones.

Each epoch recomputes every training example from its clean waveform with draws from
(seed, epoch, index): epochs differ, the same epoch is the same, the shapes and lengths
never change, and a run killed mid-way resumes to bit-identical parameters.
"""

import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

import bilstm_jax
from bilstm_jax import app, faults, tasks
from bilstm_jax.errors import ConfigError
from configs import fsdd as fsdd_config
from configs import fsdd_ctc as ctc_config
from tests.tasks.test_speech import tiny, write_tones
from tests.training.test_checkpoint import _assert_same
from tests.utils import ROOT

AUGMENT = {
  'data.shift_ms': 20.0,
  'data.snr_db_min': 10.0,
  'data.snr_db_max': 30.0,
  'data.time_masks': 1,
  'data.max_time_mask': 3,
  'data.freq_masks': 1,
  'data.max_freq_mask': 2,
}


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  return write_tones(tmp_path_factory.mktemp('tones'))


def _fitted(module, variant, folder, **overrides):
  task = tasks.from_config(tiny(module, variant, folder, **{**AUGMENT, **overrides}))
  task = task.fit('train')
  return task, task.read('train')


@pytest.mark.parametrize(
  'module, variant', [(fsdd_config, 'tiny'), (ctc_config, 'tiny'), (ctc_config, 'frames_tiny')]
)
def test_each_epoch_draws_afresh_and_the_same_epoch_again(folder, module, variant):
  task, clean = _fitted(module, variant, folder)
  before = {k: v.copy() for k, v in clean.items()}
  one, again, two = (task.epoch_transform(clean, 0, e) for e in (1, 1, 2))
  for data in (one, two):
    assert sorted(data) == sorted(clean)
    for key in clean:
      assert data[key].shape == clean[key].shape and data[key].dtype == clean[key].dtype, key
    np.testing.assert_array_equal(data['lengths'], clean['lengths'])
    assert not np.array_equal(data['inputs'], clean['inputs'])
    # Padding stays zero, so the batches the loop cuts look like the clean set's.
    pad = np.arange(clean['inputs'].shape[1])[None, :] >= clean['lengths'][:, None]
    assert not data['inputs'][pad].any()
  for key in clean:  # a resumed run asks again for its epoch: it gets the same data
    np.testing.assert_array_equal(one[key], again[key])
    np.testing.assert_array_equal(clean[key], before[key])  # the clean set is untouched
  assert not np.array_equal(one['inputs'], two['inputs'])
  assert not np.array_equal(one['inputs'], task.epoch_transform(clean, 1, 1)['inputs'])
  if task.name == 'fsdd_ctc':  # the digits said never move
    np.testing.assert_array_equal(one['labels'], clean['labels'])


def test_without_augmentation_the_training_set_is_returned_as_is(folder):
  task = tasks.from_config(tiny(fsdd_config, 'tiny', folder)).fit('train')
  clean = task.read('train')
  assert task.epoch_transform(clean, 0, 3) is clean


def test_augment_copies_is_refused_with_the_new_way(folder):
  cfg = tiny(fsdd_config, 'tiny', folder)
  cfg.data.augment_copies = 1
  with pytest.raises(ConfigError, match='augment_copies=1 was removed: augmentation is now'):
    app.validate(cfg)


def _train_py(workdir, flags, env=None):
  cmd = [sys.executable, 'train.py', f'--workdir={workdir}', *flags]
  env = {**os.environ, 'PYTHONPATH': ROOT, **(env or {})}
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigkill_and_resume_with_augmentation_is_bit_identical(folder, tmp_path):
  reference = str(tmp_path / 'reference')
  app.train_and_evaluate(tiny(fsdd_config, 'tiny', folder, **AUGMENT), reference)
  workdir = str(tmp_path / 'run')
  flags = ['--config=configs/fsdd.py:tiny', f'--config.data.folder={folder}']
  flags += [f'--config.{key}={value}' for key, value in AUGMENT.items()]
  # Saves come at epochs 4, 8 and 12: killed entering the second, mid-run.
  killed = _train_py(workdir, flags, env={faults.ENV: 'save:2'})
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  resumed = _train_py(workdir, flags)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  events = pathlib.Path(workdir, 'metrics.jsonl').read_text()
  assert '"resume"' in events
  _assert_same(
    bilstm_jax.load(reference, 'latest').state.params,
    bilstm_jax.load(workdir, 'latest').state.params,
  )
