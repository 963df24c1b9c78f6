"""A trained run, loaded for use: `bilstm_jax.load(workdir).predict(...)` and `.evaluate(...)`.

`load` reads the workdir's `config.json` and `task.json`, rebuilds the task and its
model, and restores the best (by `train.metric`) or the latest checkpoint's parameters.
`train.py --mode=evaluate` and `--mode=predict` go through here.

A run that stacks several models (an `ensemble` block) loads as the `Trained` subclass
registered for its config block (`register_kind`): `bilstm_jax.ensembles.trained`
registers the ensemble's when imported (`bilstm_jax.load` and the app import it), so
this module, below ensembles/, never imports it.

  model = bilstm_jax.load('runs/default')
  model.predict('dev')                               # [{'index': 0, 'length': 7, ...}, ...]
  model.predict_arrays({'inputs': x, 'lengths': n})  # {'predictions': float32[b, t, 1]}
  model.evaluate('dev')                              # {'loss': ..., 'mae': ...}

`predict` returns the task's records (`Task.records`: tag names, labels with
probabilities, transcripts, forecast rows), the very records `--mode=predict` writes.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import ml_collections
import numpy as np
import optax

from bilstm_jax import tasks
from bilstm_jax.data import files
from bilstm_jax.errors import CheckpointError, DataFileError
from bilstm_jax.training import program, steps
from bilstm_jax.training import workdir as workdir_lib

COLUMN_SUFFIXES = ('.conll', '.tsv')  # outputs written as CoNLL columns (token, tag)


@dataclasses.dataclass
class Trained:
  """A task, its model's trained parameters (stacked for an ensemble) and where from.

  A single model's; a registered subclass (`register_kind`) predicts and evaluates
  stacked members.

  Attributes:
    task: the fitted task (sizes from the run's task.json).
    config: the run's config (with any overrides the caller gave).
    state: a TrainState holding the parameters (and model state); for an ensemble every
      leaf has a leading member axis.
    checkpoint: the checkpoint's path.
    num_members: the ensemble's size, or None for a single model.
  """

  task: tasks.Task
  config: ml_collections.ConfigDict
  state: steps.TrainState
  checkpoint: str
  num_members: int | None = None

  @property
  def batch_size(self) -> int:
    """The run's `train.batch_size`: the batch `predict` and `evaluate` run in."""
    return self.config.train.batch_size

  def dataset(self, data, labelled: bool) -> dict:
    """`data` as a checked dataset: a split name, a file path, a list of examples for the
    task's `encode` (text: token lists or strings), or a dict of arrays."""
    if isinstance(data, str):
      return self.task.read(data, labelled=labelled)
    if isinstance(data, list | tuple):
      return self.task.encode(list(data))
    arrays = {k: np.asarray(v) for k, v in dict(data).items()}
    dataset = files.from_arrays('the arrays passed in', arrays)
    if labelled and self.task.label_key not in dataset:
      raise DataFileError(f'The arrays passed in have no "{self.task.label_key}" to score.')
    self.task.check(dataset, 'the arrays passed in')
    return dataset

  def predict(self, data) -> list[dict]:
    """The task's readable records for every example of `data`, in order: what
    `--mode=predict` writes as JSON lines (`Task.records`).

    Args:
      data: a split ('train', 'dev', 'test'), a file path, a list of examples the task
        can `encode` (text: token lists or strings), or a dict of arrays ({'inputs',
        'lengths'}; lengths default to full length).

    Returns:
      One JSON-able dict per example, e.g. {'tokens', 'tags', 'confidence'} for a text
      tagger; by default each example's "index", "length" and prediction arrays as lists.
    """
    dataset = self.dataset(data, labelled=False)
    return self.task.records(dataset, self.predict_encoded(dataset), data)

  def predict_arrays(self, data) -> dict:
    """The task's prediction arrays for every example of `data` (as for `predict`).

    Returns:
      {name: array[n, ...]}: the task's `predictions` (e.g. per-step values, or labels
      and their probabilities), padded. An ensemble adds '<name>_std' for float
      predictions: the spread over members.
    """
    return self.predict_encoded(self.dataset(data, labelled=False))

  def predict_encoded(self, dataset: dict) -> dict:
    """`predict_arrays` on a dataset the task built itself (`task.read`, `task.encode`): no
    checks."""
    fn = jax.jit(functools.partial(steps.predict_step, task=self.task))
    return program.predict_dataset(fn, self.state, dataset, self.batch_size, self.task)

  def evaluate(self, data) -> dict:
    """The task's metrics on `data` (as for `predict`, labelled).

    Returns:
      {metric: value}; an ensemble's are those of the combined output, plus
      'member_<metric>' lists.
    """
    dataset = self.dataset(data, labelled=True)
    fn = jax.jit(functools.partial(steps.eval_step, task=self.task))
    return program.evaluate_dataset(fn, self.state, dataset, self.batch_size, self.task)

  def write_predictions(self, data, path: str) -> int:
    """Predicts `data` and writes it to `path`; returns the number of examples.

    Args:
      data: as for `predict`.
      path: `.npz`: the prediction arrays and "lengths"; `.conll` or `.tsv`: a tagger's
        records as CoNLL columns (token, tag); anything else (`.jsonl`): the records of
        `predict`, one JSON line each.
    """
    dataset = self.dataset(data, labelled=False)
    preds = self.predict_encoded(dataset)
    if path.endswith('.npz'):
      files.write_predictions(path, preds, dataset['lengths'])
      return len(dataset['lengths'])
    records = self.task.records(dataset, preds, data)
    if path.endswith(COLUMN_SUFFIXES):
      files.write_columns(path, records)
    else:
      files.write_jsonl(path, records)
    return len(records)

  @classmethod
  def prepare(cls, task: tasks.Task, config) -> tuple[tasks.Task, int | None]:
    """The task to build the model from, and how many models the checkpoint stacks (None:
    one, unstacked). Called by `load` before the parameters are restored."""
    return task, None


# {config block: the Trained subclass that loads a run whose config has that block}.
KINDS: dict[str, type[Trained]] = {}


def register_kind(block: str, kind: type[Trained]) -> None:
  """Loads runs whose config has a `block` block as `kind` (e.g. 'ensemble')."""
  KINDS[block] = kind


def _kind(workdir: str, config) -> type[Trained]:
  for block, kind in KINDS.items():
    if config.get(block) is not None:
      return kind
  if config.get('ensemble') is not None:  # its kind was never registered
    raise CheckpointError(
      f'{workdir} holds an ensemble; import bilstm_jax.ensembles.trained to load it '
      '(bilstm_jax.load does).'
    )
  return Trained


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with (its config.json)."""
  saved = workdir_lib.read_json(os.path.join(workdir, workdir_lib.CONFIG))
  if saved is None:
    raise CheckpointError(f'{workdir} holds no run ({workdir_lib.CONFIG} is missing).')
  return ml_collections.ConfigDict(saved)


def load(
  workdir: str, checkpoint: str = 'best', config: ml_collections.ConfigDict | None = None
) -> Trained:
  """Loads a trained run for prediction and evaluation.

  Args:
    workdir: the run's directory.
    checkpoint: 'best' (by the run's `train.metric`) or 'latest'.
    config: the config to use; default the run's own config.json. Its model must match
      the checkpoint's.

  A damaged checkpoint is skipped for the next best (or newest) one, with a warning on
  stderr naming it.

  Raises:
    CheckpointError: no run, no undamaged checkpoint, or one of another model shape.
  """
  if checkpoint not in ('best', 'latest'):
    raise ValueError(f"checkpoint must be 'best' or 'latest'; got {checkpoint!r}.")
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    raise CheckpointError(f'No checkpoints in {directory}; train first (--mode=train).')
  config = read_config(workdir) if config is None else config
  spec = workdir_lib.read_json(os.path.join(workdir, workdir_lib.TASK))
  if spec is None:
    raise CheckpointError(f'{workdir} has no {workdir_lib.TASK}; train first (--mode=train).')
  task = tasks.from_config(config).with_spec(spec).load_artifacts(workdir)
  kind = _kind(workdir, config)
  task, members = kind.prepare(task, config)
  model = task.make_model()
  inputs = task.model_inputs(task.example_batch())

  def init(key):
    return steps.init_train_state(key, model, optax.identity(), inputs)

  if members is not None:
    keys = jax.random.split(jax.random.key(0), members)
    like = jax.eval_shape(jax.vmap(init), keys)
  else:
    like = jax.eval_shape(init, jax.random.key(0))
  ckpts = workdir_lib.open_checkpoints(
    workdir,
    config.train.metric,
    config.train.metric_mode,
    config.checkpoint.keep_best,
    read_only=True,
  )
  try:
    found = ckpts.restore_params_good(checkpoint, like.params, like.model_state)
    if found is None:
      raise CheckpointError(f'No complete checkpoint in {directory}; train first.')
    step, params, model_state = found
    path = ckpts.path(step)
  finally:
    ckpts.close()
  state = steps.TrainState.create(
    apply_fn=model.apply, params=params, tx=optax.identity(), model_state=model_state
  )
  return kind(task=task, config=config, state=state, checkpoint=path, num_members=members)
