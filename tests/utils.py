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
