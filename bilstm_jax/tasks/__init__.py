"""Tasks: what a config's `data.task` names (see `bilstm_jax.tasks.base.Task`).

  regression      float targets per step, MSE (also the synthetic 'seed_noise' and
                  'bidir_window' tasks of `bilstm_jax.data.synthetic`)
  tagging         an integer label per step, cross-entropy, token accuracy
  classification  an integer label per sequence, pooled over valid steps, accuracy

A new task is a `Task` subclass in its own module and an entry in `TASKS` ('module:Class',
imported when a config names it); the training loop, the ensembles and inference stay as
they are.
"""

from __future__ import annotations

import importlib

from bilstm_jax.tasks.base import Task
from bilstm_jax.tasks.classification import ClassificationTask
from bilstm_jax.tasks.regression import RegressionTask
from bilstm_jax.tasks.tagging import TaggingTask

TASKS: dict[str, str] = {
  'regression': 'bilstm_jax.tasks.regression:RegressionTask',
  'seed_noise': 'bilstm_jax.tasks.regression:RegressionTask',
  'bidir_window': 'bilstm_jax.tasks.regression:RegressionTask',
  'tagging': 'bilstm_jax.tasks.tagging:TaggingTask',
  'classification': 'bilstm_jax.tasks.classification:ClassificationTask',
  'forecast': 'bilstm_jax.tasks.forecast:ForecastTask',
  'fsdd': 'bilstm_jax.tasks.speech:SpokenDigitTask',
  'fsdd_ctc': 'bilstm_jax.tasks.speech_joined:DigitCTCTask',
  'fsdd_frames': 'bilstm_jax.tasks.speech_joined:DigitFramesTask',
  'text_tagging': 'bilstm_jax.tasks.text_tagging:TextTaggingTask',
  'text_classification': 'bilstm_jax.tasks.text_classification:TextClassificationTask',
}


def task_class(name: str) -> type[Task]:
  """The Task class `data.task` names."""
  if name not in TASKS:
    raise ValueError(f'data.task must be one of {sorted(TASKS)}; got {name!r}.')
  module, _, cls = TASKS[name].partition(':')
  return getattr(importlib.import_module(module), cls)


def from_config(config) -> Task:
  """The task `config.data.task` names, built from the config (before `fit`)."""
  return task_class(config.data.task).from_config(config)


__all__ = [
  'TASKS',
  'ClassificationTask',
  'RegressionTask',
  'TaggingTask',
  'Task',
  'from_config',
  'task_class',
]
