"""`Task.fit`: fitted on the training source alone, saved in `spec()`, restored exactly.

For text (vocabularies), speech (feature statistics) and forecasting (the scaler): fit,
then spec -> JSON -> `with_spec` on a fresh task gives the same fitted values and the
same encoded datasets; a broken dev file does not change (or stop) the fit; reading with
an unfitted task is an error naming `fit`.
"""

import json

import numpy as np
import pytest

from bilstm_jax import tasks
from bilstm_jax.data import fsdd, wav
from bilstm_jax.errors import DataFileError, NotFittedError
from bilstm_jax.tasks import RegressionTask
from configs import fsdd as fsdd_config
from configs import fsdd_ctc as ctc_config
from configs import pos_ud, sst2
from tests.tasks import generated, text_fixtures
from tests.tasks.test_forecast import _config as forecast_config
from tests.tasks.test_forecast import _write_csv
from tests.tasks.test_speech import tone


def restored(task, config):
  """A fresh task from `config` with `task`'s spec, through JSON as task.json holds it."""
  return tasks.from_config(config).with_spec(json.loads(json.dumps(task.spec())))


def assert_same_data(a: dict, b: dict):
  assert sorted(a) == sorted(b)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def text_config(module, train, dev):
  cfg = module.get_config('tiny')
  cfg.data.train, cfg.data.dev = str(train), str(dev)
  return cfg


@pytest.mark.parametrize('module', [pos_ud, sst2])
def test_text_fit_reads_the_training_file_alone_and_round_trips(module, tmp_path):
  if module is pos_ud:
    train = text_fixtures.write_conllu(str(tmp_path / 'train.conllu'), 40, 0)
    dev = text_fixtures.write_conllu(str(tmp_path / 'dev.conllu'), 10, 1)
  else:
    train = text_fixtures.write_tsv(str(tmp_path / 'train.tsv'), 40, 0)
    dev = text_fixtures.write_tsv(str(tmp_path / 'dev.tsv'), 10, 1)
  unfitted = tasks.from_config(text_config(module, train, dev))
  with pytest.raises(NotFittedError, match=r'not fitted: call task\.fit\(\)'):
    unfitted.read('dev')
  with pytest.raises(NotFittedError, match=r'task\.fit\(\)'):
    unfitted.encode([['a', 'cat']])
  task = unfitted.fit('train')
  # The dev file plays no part: missing or garbage, the fit is the same.
  missing = tasks.from_config(text_config(module, train, tmp_path / 'nowhere.txt')).fit()
  (tmp_path / 'garbage').write_bytes(b'\xff\xfe\x00 not text \x80')
  garbage = tasks.from_config(text_config(module, train, tmp_path / 'garbage')).fit()
  for other in (missing, garbage):
    assert other.spec() == task.spec()
  back = restored(task, text_config(module, train, dev))
  assert back.sizes == task.sizes
  for name, v in task.vocabs.items():
    assert back.vocabs[name].tokens == v.tokens and back.vocabs[name].lowercase == v.lowercase
  for split in ('train', 'dev'):
    assert_same_data(back.read(split), task.read(split))
  assert_same_data(back.encode(['the cat', 'zebra']), task.encode(['the cat', 'zebra']))


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
  """Two FSDD-named folders with the same training wavs; in the second, a dev wav is
  garbage."""
  rng = np.random.default_rng(0)
  clean, broken = tmp_path_factory.mktemp('clean'), tmp_path_factory.mktemp('broken')
  for s in ('ann', 'bob'):
    for d in (0, 1, 2):
      for i in (5, 6, 10, 11, 12):  # 5-9 dev, the rest train (fsdd.dev_split)
        wave = tone(d, rng)
        for folder in (clean, broken):
          wav.write_wav(str(folder / f'{d}_{s}_{i}.wav'), wave, fsdd.SAMPLE_RATE)
  (broken / '1_bob_6.wav').write_bytes(b'RIFF not a wave file')
  return str(clean), str(broken)


def speech_config(module, variant, folder):
  cfg = module.get_config(variant)
  cfg.data.folder = folder
  cfg.data.cache_dir = ''
  if module is ctc_config:
    cfg.data.num_train, cfg.data.num_dev = 6, 4
  return cfg


@pytest.mark.parametrize(
  'module,variant', [(fsdd_config, 'tiny'), (ctc_config, 'tiny'), (ctc_config, 'frames_tiny')]
)
def test_speech_fit_reads_training_recordings_alone_and_round_trips(module, variant, folders):
  clean, broken = folders
  cfg = speech_config(module, variant, clean)
  unfitted = tasks.from_config(cfg)
  assert unfitted.normalise == 'train'
  with pytest.raises(NotFittedError, match=r'task\.fit\(\)'):
    unfitted.read('dev')
  task = unfitted.fit('train')
  assert task.sizes['num_classes'] == task.num_classes and task.stats is not None
  # A corrupt dev recording does not stop the fit or change its statistics.
  other = tasks.from_config(speech_config(module, variant, broken)).fit('train')
  assert other.stats == task.stats and other.sizes == task.sizes
  if module is fsdd_config:  # the joined dev set draws from every dev recording
    with pytest.raises(DataFileError):
      other.read('dev')
  back = restored(task, cfg)
  assert back.stats == task.stats and back.sizes == task.sizes
  for split in ('train', 'dev'):
    assert_same_data(back.read(split), task.read(split))


def test_forecast_fit_reads_training_rows_alone_and_round_trips(tmp_path):
  cfg = forecast_config(_write_csv(tmp_path / 'a.csv'))
  unfitted = tasks.from_config(cfg)
  with pytest.raises(NotFittedError, match=r'task\.fit\(\)'):
    unfitted.read('test')
  task = unfitted.fit('train')
  # Val and test rows far off (here by 100) leave the scaler as it is.
  shifted = tasks.from_config(forecast_config(_write_csv(tmp_path / 'b.csv', shift_test=100.0)))
  assert shifted.fit('train').sizes['scaler'] == task.sizes['scaler']
  back = restored(task, cfg)
  assert back.sizes == task.sizes
  np.testing.assert_array_equal(back.scaler().mean, task.scaler().mean)
  np.testing.assert_array_equal(back.scaler().std, task.scaler().std)
  for split in ('train', 'dev', 'test'):
    assert_same_data(back.read(split), task.read(split))


def test_default_fit_takes_sizes_from_the_training_file_alone(tmp_path):
  train = generated.write(tmp_path / 'train.npz', generated.regression(6, seed=0))
  sources = {'train': train, 'dev': str(tmp_path / 'missing.npz'), 'test': ''}
  task = RegressionTask(sources=sources).fit()
  assert task.sizes == {'input_size': 2, 'output_size': 1}
  assert RegressionTask(sources=sources).with_spec(json.loads(json.dumps(task.spec()))) == task
  tagger = tasks.TaggingTask().fit(generated.write(tmp_path / 't.npz', generated.tagging(9, 1)))
  labels = generated.tagging(9, 1)['labels']
  assert tagger.sizes['num_classes'] == int(labels.max()) + 1
