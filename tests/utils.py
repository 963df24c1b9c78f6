"""Shared test helpers: the repository root and a seconds-long variant of a config."""

import os

from configs import default

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 4 steps an epoch, 2 per compiled call, 3 epochs; a checkpoint every 2 steps.
TINY = {
  'data.num_train': 32,
  'data.num_dev': 8,
  'data.seq_len': 6,
  'model.hidden_size': 4,
  'train.batch_size': 8,
  'train.epochs': 3,
  'train.log_every_epochs': 1,
  'train.steps_per_call': 2,
  'checkpoint.save_every_steps': 2,
}


def tiny_config(config_module=default, **overrides):
  """A seconds-long variant of a config module's config, with `block.key` overrides."""
  cfg = config_module.get_config()
  for key, value in {**TINY, **overrides}.items():
    block, name = key.split('.')
    cfg[block][name] = value
  return cfg


def task_and_data(cfg=None, split='train'):
  """A config's task fitted to its training data, and one split of that data."""
  from bilstm_jax import tasks

  cfg = cfg or default.get_config()
  task = tasks.from_config(cfg).fit('train')
  train = task.read('train')
  return task, (train if split == 'train' else task.read(split))


def synthetic(cfg, split):
  """A split of a config's synthetic task (a dataset dict)."""
  return task_and_data(cfg, split)[1]


def regression_task(output_size=1, input_size=5):
  """A fitted regression task for float features: what the default config trains."""
  from bilstm_jax.tasks import RegressionTask

  return RegressionTask(sizes={'input_size': input_size, 'output_size': output_size})


def load_state(cfg, workdir, which='best'):
  """(state, checkpoint path) of a trained workdir, loaded with `cfg`."""
  import bilstm_jax

  trained = bilstm_jax.load(str(workdir), which, cfg)
  return trained.state, trained.checkpoint


def each_member_alone(trained, batch) -> list:
  """A loaded ensemble's members run one by one as ordinary single models on `batch`: the
  reference its combined outputs are checked against."""
  import jax
  import numpy as np

  from bilstm_jax.ensembles import ensemble

  state = trained.state
  num_members = jax.tree.leaves(state.params)[0].shape[0]
  return [
    np.asarray(
      state.apply_fn(
        {'params': ensemble.export_params(state, i)}, *trained.task.model_inputs(batch)
      )
    )
    for i in range(num_members)
  ]


def assert_predict_agrees(workdir, source, output, which='best', config=None) -> list:
  """`--mode=predict` (`app.predict`, what train.py runs) writes, line for line, the JSON of
  the records `bilstm_jax.load(workdir).predict(source)` returns; those records.

  `config` None is the workdir's own config.json, as train.py reads it without --config.
  """
  import json

  import bilstm_jax
  from bilstm_jax import app

  app.predict(config, str(workdir), source, str(output), which)
  with open(output, encoding='utf-8') as f:
    written = f.read().splitlines()
  records = bilstm_jax.load(str(workdir), which, config).predict(source)
  assert written == [json.dumps(r, ensure_ascii=False) for r in records]
  return records
