"""Tasks: what a config's `data.task` names (see `bilstm_jax.tasks.base.Task`).

A task is a data source plus an objective (`bilstm_jax.tasks.objectives`), composed: the
source reads and fits the data, the objective owns the loss, metrics and predictions.

  task                 source                              objective
  regression           .npz/.jsonl files, or the synthetic StepTargets (MSE)
                       'seed_noise'/'bidir_window' data
  tagging              .npz/.jsonl files                   StepLabels (label per step)
  classification       .npz/.jsonl files                   SequenceLabels (per sequence)
  text_tagging         CoNLL-U / CoNLL columns             StepLabels, or CRFTags (crf)
  text_classification  sentence<TAB>label TSV              SequenceLabels
  fsdd                 FSDD wavs, one digit each           SequenceLabels
  fsdd_frames          joined FSDD utterances              StepLabels (digit/silence)
  fsdd_ctc             joined FSDD utterances              CTCLabels (a digit string)
  forecast             CSV time series                     the task's own hooks

`data.task` is a short name above (`TASKS`) or the path to any `Task` subclass, so a task
of your own needs no edit here, and no entry in `TASKS`:

  --config.data.task=my_tasks:Segmenter                # a module importable from sys.path
  --config.data.task=path/to/my_tasks.py:Segmenter     # a file, loaded as a module

The short names are aliases for the same 'module:Class' paths. The run's config.json
records the name given, so `bilstm_jax.load(workdir)` finds the class again wherever that
path still leads (a relative file path: from the working directory). The training loop,
the ensembles, inference and export use any task through `Task`'s hooks alone
(`examples/` shows one made from scratch).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from typing import NoReturn

from bilstm_jax.errors import ConfigError
from bilstm_jax.tasks.base import Task
from bilstm_jax.tasks.classification import ClassificationTask
from bilstm_jax.tasks.ctc_objective import CTCLabels
from bilstm_jax.tasks.objectives import Objective, SequenceLabels, StepLabels, StepTargets
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
  """The Task class `data.task` names.

  Args:
    name: a short name (a key of `TASKS`), 'module:Class' with the module importable from
      sys.path, or 'path/to/file.py:Class' (the file is loaded as a module of its own; a
      relative path is taken from the working directory).

  Returns:
    The class, a subclass of `Task`.

  Raises:
    ConfigError: naming `config.data.task` and what is wrong (no such module, file or
      class, or a class that is not a `Task`).
  """
  path = TASKS.get(name, name)
  module_name, sep, class_name = path.rpartition(':')
  if not (sep and module_name and class_name):
    _bad(
      name,
      f"must be one of {sorted(TASKS)}, or your own Task class as 'module:Class' or "
      "'path/to/file.py:Class'",
    )
  module = _import(name, module_name)
  cls = getattr(module, class_name, None)
  if cls is None:
    _bad(name, f'{module_name} has no {class_name!r}')
  if not (isinstance(cls, type) and issubclass(cls, Task)) or cls is Task:
    what = f'the class {cls.__name__}' if isinstance(cls, type) else f'a {type(cls).__name__}'
    _bad(name, f'{module_name}:{class_name} is {what}, not a subclass of bilstm_jax.tasks.Task')
  return cls


def _bad(name: str, need: str) -> NoReturn:
  raise ConfigError(f'config.data.task={name!r}: {need}.')


def _import(name: str, module_name: str):
  """The module a task path names: a .py file loaded by path, else imported by name."""
  if module_name.endswith('.py'):
    return _load_file(name, module_name)
  try:
    return importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    missing = e.name or ''
    if not missing or not (module_name + '.').startswith(missing + '.'):
      raise  # the module exists but imports one that does not: its own bug
    _bad(
      name,
      f'no module named {missing!r} on sys.path (put its directory on PYTHONPATH, or give '
      "the file: 'path/to/file.py:Class')",
    )
  except (ImportError, TypeError, ValueError) as e:  # e.g. a relative name ('.x')
    _bad(name, f'cannot import {module_name!r} ({e})')


def _load_file(name: str, file: str):
  """A task file as a module, loaded once per process (a private name per path, so it can
  shadow no installed module)."""
  path = os.path.abspath(os.path.expanduser(file))
  if not os.path.isfile(path):
    _bad(name, f'no such file {path}')
  stem = os.path.splitext(os.path.basename(path))[0]
  digest = hashlib.sha1(path.encode()).hexdigest()[:8]
  module_name = f'_bilstm_jax_task_{re.sub(r"[^0-9A-Za-z_]", "_", stem)}_{digest}'
  if module_name in sys.modules:
    return sys.modules[module_name]
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module  # dataclasses look the module up while it executes
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[module_name]
    raise
  return module


def from_config(config) -> Task:
  """The task `config.data.task` names (`task_class`), built from the config (before `fit`)."""
  return task_class(config.data.task).from_config(config)


__all__ = [
  'TASKS',
  'CTCLabels',
  'ClassificationTask',
  'Objective',
  'RegressionTask',
  'SequenceLabels',
  'StepLabels',
  'StepTargets',
  'TaggingTask',
  'Task',
  'from_config',
  'task_class',
]
