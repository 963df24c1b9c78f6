"""The README's Python examples run as written (so the README cannot drift from the code)."""

import os
import re

import jax
import pytest

from bilstm_jax import app
from bilstm_jax.models import BiLSTMRegressor
from bilstm_jax.training import export
from configs import default

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')


def _blocks() -> list[str]:
  with open(README) as f:
    return re.findall(r'^```python\n(.*?)^```', f.read(), re.S | re.M)


def test_the_module_examples_run_and_give_the_shapes_they_state():
  blocks = _blocks()
  assert len(blocks) == 5, 'a Python block was added to or removed from the README'
  scope = {}
  exec(blocks[0], scope)  # linen
  assert scope['y'].shape == (4, 20, 64)
  assert scope['h_n'].shape == scope['c_n'].shape == (4, 4, 32)
  exec(blocks[1], scope)  # Flax NNX, reusing the first block's x and lengths
  assert scope['y'].shape == (4, 20, 64)
  assert scope['h_n'].shape == (4, 4, 32)


@pytest.mark.slow
def test_the_own_data_example_writes_files_that_train_and_load(tmp_path, monkeypatch):
  """Blocks 2 and 3: the numpy files, a (shortened) run of the README's command, then
  `bilstm_jax.load` on it."""
  blocks = _blocks()
  monkeypatch.chdir(tmp_path)
  scope = {}
  exec(blocks[2], scope)
  cfg = default.get_config()
  cfg.data.task, cfg.data.train, cfg.data.dev = 'tagging', 'train.npz', 'dev.npz'
  cfg.train.epochs = cfg.train.log_every_epochs = 2
  app.train_and_evaluate(cfg, 'runs/tagging')
  exec(blocks[3], scope)
  assert scope['preds']['labels'].shape == scope['preds']['confidence'].shape == (500, 12)
  assert set(scope['metrics']) == {'loss', 'accuracy'} and scope['metrics']['accuracy'] > 0.9


def test_the_export_example_loads_what_train_py_writes(tmp_path, monkeypatch):
  """The last block reads `runs/default/export/predict.jaxexport`, as `make train` writes
  it (the single-model program calls `export.export_predict` the same way)."""
  block = _blocks()[4]
  if 'runs/default/export/predict.jaxexport' not in block:
    pytest.fail('the export example no longer reads the default run; update this test')
  model = BiLSTMRegressor(hidden_size=8, output_size=1)
  x, n = jax.numpy.zeros((1, 3, 5)), jax.numpy.ones((1,), jax.numpy.int32)
  params = model.init(jax.random.key(0), x)['params']
  export.export_predict(model, {'params': params}, (x, n), str(tmp_path / 'runs/default/export'))
  monkeypatch.chdir(tmp_path)
  scope = {}
  exec(block, scope)
  assert scope['y'].shape == (2, 7, 1)
