"""The export's symbolic axes come from the task (`Task.export_axes`).

A sequence task's export takes any batch size and length (text: any word length too),
and gives what the model gives; the forecaster's has a symbolic batch, its window of
`input_len` steps fixed, and no dummy axis.
"""

import json
import os

import jax
import numpy as np
import pytest

from bilstm_jax import tasks
from bilstm_jax.nn import native
from bilstm_jax.training import export
from configs import default, pos_ud
from tests.tasks import generated, text_fixtures
from tests.tasks.test_forecast import _config as forecast_config
from tests.tasks.test_forecast import _write_csv
from tests.utils import tiny_config


def exported(task, directory):
  """(the export's function, its signature, the model, its variables) of a fitted task."""
  model = task.make_model()
  variables = model.init(jax.random.key(0), *task.model_inputs(task.example_batch(2, 3)))
  export.export_predict(model, variables, task, str(directory))
  with open(os.path.join(directory, 'signature.json')) as f:
    signature = json.load(f)
  return export.load(str(directory)), signature, model, variables


def assert_same_as_the_model(fn, model, variables, task, batch):
  got = fn(*(batch[k] for k in task.example_batch()))
  with native.disabled():  # what the export holds: the portable scan
    want = model.apply(variables, *task.model_inputs(batch))
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def sequence_batch(rng, batch, time, features=None, vocab=None, lengths=None):
  if vocab:
    inputs = rng.integers(1, vocab, (batch, time)).astype(np.int32)
  else:
    inputs = rng.normal(size=(batch, time, features)).astype(np.float32)
  lengths = np.asarray(lengths or [time] * batch, np.int32)
  return {'inputs': inputs, 'lengths': lengths}


@pytest.mark.parametrize('kind', ['regression', 'tagging'])
def test_a_sequence_export_takes_any_batch_size_and_length(kind, tmp_path):
  data = generated.regression(6, 0) if kind == 'regression' else generated.tagging(6, 0)
  path = generated.write(tmp_path / 'train.npz', data)
  cfg = tiny_config(default, **{'data.task': kind, 'data.train': path, 'data.dev': path})
  task = tasks.from_config(cfg).fit()
  assert task.export_axes() == {'inputs': ('batch', 'time', None), 'lengths': ('batch',)}
  fn, signature, model, variables = exported(task, tmp_path / 'export')
  assert list(signature['inputs']) == ['inputs', 'lengths']
  rng = np.random.default_rng(0)
  features = task.sizes['input_size']
  for batch, time, lengths in ((1, 2, [2]), (3, 7, [7, 1, 4])):
    data = sequence_batch(rng, batch, time, features, lengths=lengths)
    assert_same_as_the_model(fn, model, variables, task, data)


def test_a_text_export_takes_any_word_length(tmp_path):
  train = text_fixtures.write_conllu(str(tmp_path / 'train.conllu'), 20, 0)
  cfg = pos_ud.get_config('tiny')
  cfg.data.train, cfg.data.dev = train, train
  task = tasks.from_config(cfg).fit()
  assert task.export_axes()['chars'] == ('batch', 'time', 'word')
  fn, signature, model, variables = exported(task, tmp_path / 'export')
  assert list(signature['inputs']) == ['inputs', 'lengths', 'chars']
  rng = np.random.default_rng(1)
  for batch, time, width in ((1, 3, 2), (2, 5, 9)):
    data = sequence_batch(rng, batch, time, vocab=task.sizes['vocab_size'])
    data['chars'] = rng.integers(1, task.sizes['char_vocab_size'], (batch, time, width))
    data['chars'] = data['chars'].astype(np.int32)
    assert_same_as_the_model(fn, model, variables, task, data)


def test_the_forecast_export_has_a_symbolic_batch_and_no_dummy_axis(tmp_path):
  task = tasks.from_config(forecast_config(_write_csv(tmp_path / 's.csv'))).fit()
  length, channels = task.data['input_len'], task.sizes['input_size']
  fn, signature, model, variables = exported(task, tmp_path / 'export')
  assert signature['inputs']['inputs'].replace(' ', '') == f'float32[batch,{length},{channels}]'
  rng = np.random.default_rng(2)
  for batch in (1, 4):
    data = sequence_batch(rng, batch, length, channels)
    assert_same_as_the_model(fn, model, variables, task, data)
  with pytest.raises(Exception, match='16'):  # the window's length is fixed
    fn(*sequence_batch(rng, 2, length + 1, channels).values())


def test_axes_that_do_not_fit_the_example_batch_are_refused(tmp_path):
  class Wrong(tasks.RegressionTask):
    def export_axes(self):
      return {'inputs': ('batch',), 'lengths': ('batch',)}

  task = Wrong(sizes={'input_size': 2, 'output_size': 1})
  with pytest.raises(ValueError, match=r"Wrong.export_axes\(\) names \('batch',\) for 'inputs'"):
    export.export_predict(None, {}, task, str(tmp_path))
