"""`Task`: a data source plus an objective, the one place that knows what is learned.

The training loop, the ensembles, inference and the export know only "a batch dict in,
outputs and metric sums out"; the rest comes from the task's hooks (each one's contract,
and why it is required or optional: docs/guides/own-task.md).

A task is composed of two parts, not built by inheriting from another concrete task:
  the source     `read`, `check`, `fit`, `spec`/`with_spec`, `example_batch`, ... and
                 `make_model()` (the model, from `model` and the fitted `sizes`)
  the objective  `objective`, an instance of `bilstm_jax.tasks.objectives` (`StepLabels`,
                 `SequenceLabels`, `StepTargets`, `CTCLabels`) or of your own
                 `Objective`: `metrics`, `metric_modes`, `loss`, `eval_sums`, `combine`,
                 `predictions`, `per_step`, `label_key`, `prediction_time_keys`,
                 `host_metric_modes`, `host_metrics` and the labels' check delegate to
                 it. A task may instead override those hooks directly.

Required: `name`, `make_model()`, and an `objective` or the hooks it stands for. Optional,
with defaults for .npz/.jsonl files of features or token ids:
  from_config, validate_config    the task from a run config; checks of its keys
  read(source, labelled), check   a split or file -> numpy dataset dict; its checks
  fit(source='train')             fitted on the training source alone -> the fitted task
  spec(), with_spec(spec)         what `fit` found, as JSON (task.json), and back exactly
  save_artifacts, load_artifacts  the same for what is too big for JSON (word vectors)
  example_batch(), model_inputs   a batch's arrays; the model's positional arguments
  width_keys, example_widths      a second axis width buckets cut (text: characters)
  export_axes()                   the exported function's symbolic axes, by name
  epoch_transform(set, seed, e)   the training set epoch e sees (augmentation)
  host_metric_modes, host_metrics dev metrics computed on the host from all outputs
  encode(examples), records(...)  examples in memory; predictions in the task's terms
  report(...), final_line(...)    the end-of-run summary

Concrete tasks are frozen dataclasses whose fields are plain values (paths, the model's
typed options, sizes). `from_config(config)` is the adapter from the training app's
ConfigDict and `validate_config(config)` checks the keys the task reads; nothing else in
a task reads a config. A config names a task by a short name or by 'module:Class' /
'path/to/file.py:Class' (`bilstm_jax.tasks.task_class`), so a task need not live here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax
import numpy as np

from bilstm_jax.data import files
from bilstm_jax.errors import ConfigError, DataFileError, NotFittedError
from bilstm_jax.models.config import ModelConfig
from bilstm_jax.models.sequence import EncoderConfig
from bilstm_jax.tasks import arrays
from bilstm_jax.tasks.objectives import Objective

SPLITS = ('train', 'dev', 'test')


@dataclasses.dataclass(frozen=True)
class Task:
  """Base class of the generic tasks reading .npz/.jsonl files (`bilstm_jax.data.files`).

  Attributes:
    sources: {split: file path} for 'train', 'dev' and 'test' ('' or absent: none).
    model: the model's typed options (`bilstm_jax.models.EncoderConfig` for the generic
      tasks; a task with another model family keeps that family's config), or None
      for a task built without a config (it can read and fit, not build its model).
    sizes: what `fit` found in the training data: 'input_size' (features) or
      'vocab_size' (ids), and the task's output size; empty before `fit`.
  """

  name: ClassVar[str]
  source_files: ClassVar[str] = 'a .npz or .jsonl file'  # what config.data.<split> names
  objective: ClassVar[Objective | None] = None  # what is learned (the module docstring)
  # Model options only some tasks take; `validate_config` refuses them for the others.
  takes_word_vectors: ClassVar[bool] = False  # model.word_vectors: pretrained embeddings
  takes_adversarial: ClassVar[bool] = False  # model.adversarial: embeddings to perturb
  sources: dict = dataclasses.field(default_factory=dict)
  model: ModelConfig | None = None
  sizes: dict = dataclasses.field(default_factory=dict)

  # ----------------------------------------------------------------------- config

  @classmethod
  def validate_config(cls, config) -> None:
    """Raises ConfigError naming the first config value this task cannot use.

    The training app calls it before anything is read, after its own checks of the keys
    every task shares. The default refuses the model options the task does not take
    (`takes_word_vectors`, `takes_adversarial`); a task with keys of its own checks them
    after calling `super().validate_config(config)`.

    Args:
      config: the whole run config (ConfigDict), after the command line.
    """
    model, task = config.model, config.data.task
    vectors = model.get('word_vectors')
    if vectors and not cls.takes_word_vectors:
      raise ConfigError(
        f'config.model.word_vectors={vectors!r}: pretrained word vectors are for the text '
        f'tasks, whose models embed words (data.task={task!r} takes none).'
      )
    adversarial = model.get('adversarial', 0.0)
    if adversarial and not cls.takes_adversarial:
      raise ConfigError(
        f'config.model.adversarial={adversarial!r}: needs a text task, whose embeddings it '
        f'perturbs (data.task={task!r} has none).'
      )

  @classmethod
  def from_config(cls, config) -> Task:
    """The task (before `fit`) from a run config: by default the files `data.train`,
    `data.dev` and `data.test` and the model block (`EncoderConfig`)."""
    sources = {s: config.data.get(s) or '' for s in SPLITS}
    return cls(sources=sources, model=EncoderConfig.from_config(config.model))

  # ------------------------------------------------------------------------- data

  def resolve(self, source: str) -> str:
    """A split's file path, or `source` itself if it is not a split name."""
    if source in SPLITS:
      path = self.sources.get(source) or ''
      if not path:
        raise DataFileError(f'No {source} data: set config.data.{source} to {self.source_files}.')
      return path
    return source

  def read(self, source: str, labelled: bool = True) -> dict:
    """A split or file as a dataset dict, checked against this task (and its sizes).

    Args:
      source: 'train', 'dev', 'test' (the configured files) or a file path.
      labelled: the data must hold the task's `label_key` (for training and evaluation;
        prediction reads inputs alone).
    """
    path = self.resolve(source)
    dataset = files.read(path)
    if labelled:
      arrays.need(dataset, self.label_key, path, self.name)
    self.check(dataset, path)
    return dataset

  def check(self, dataset: dict, where: str) -> None:
    """Raises DataFileError naming `where` if `dataset` does not fit this task: its
    inputs, then the objective's check of its labels."""
    arrays.check_inputs(dataset['inputs'], self.sizes, where)
    if self.objective is not None:
      self.objective.check(dataset, where, self.sizes)

  def fit(self, source: str = 'train') -> Task:
    """This task fitted on its raw training source, reading nothing else (no dev or test).

    What the model's shapes or the encoding depend on (sizes, vocabularies, scalers,
    feature statistics) is fitted here and kept in `spec()`, which `with_spec` restores
    exactly; `read` may refuse an unfitted task (`not_fitted`). By default the sizes of
    `read(source)`: 'vocab_size' (int inputs: largest id + 1) or 'input_size', and
    'num_classes' (int labels: largest real one + 1) or 'output_size' (float targets).

    Args:
      source: 'train' (the configured training data) or a file path.
    """
    data = self.read(source)
    sizes = arrays.fitted_sizes(data['inputs'], data[self.label_key], data['lengths'])
    return dataclasses.replace(self, sizes=sizes)

  def not_fitted(self, what: str) -> NotFittedError:
    """The error for `what` asked of a task before `fit` (or `with_spec`)."""
    return NotFittedError(
      f'The {self.name} task is not fitted: call task.fit() first (or with_spec(spec) for a '
      f'trained run) before {what}.'
    )

  def spec(self) -> dict:
    """What `fit` found, as JSON: saved in the workdir beside the checkpoints."""
    return {'task': self.name, 'sizes': dict(self.sizes)}

  def with_spec(self, spec: dict) -> Task:
    """This task with the sizes of a saved `spec()`."""
    return dataclasses.replace(self, sizes=arrays.saved_sizes(spec, self.name))

  def save_artifacts(self, directory: str) -> None:
    """Writes what the fitted task needs beside its `spec()` but is too big for JSON (for
    example a word-vector table) into `directory`, the workdir; nothing by default."""

  def load_artifacts(self, directory: str) -> Task:
    """This task (after `with_spec`) with what `save_artifacts` wrote into `directory`."""
    return self

  @property
  def adversarial(self) -> float:
    """The size of the adversarial perturbation `training.steps.train_step` adds to the
    model's perturbation point (0: none); only models that mark one take it."""
    return float(getattr(self.model, 'adversarial', 0.0))

  @property
  def time_keys(self) -> tuple[str, ...]:
    """Dataset keys with a time axis (axis 1), cut by length buckets."""
    return ('inputs', 'targets', 'labels') if self.per_step else ('inputs',)

  @property
  def width_keys(self) -> tuple[str, ...]:
    """Optional: dataset keys with a width axis (axis 2, such as the characters of each
    word), cut by width buckets (`data.width_buckets`); none by default."""
    return ()

  def example_widths(self, dataset: dict) -> np.ndarray:
    """Optional: int[n], the width each example fills on the `width_keys` axis; outputs
    must not change (beyond float rounding) when a batch is cut to any width that holds
    its examples'. The full width by default."""
    return arrays.full_widths(dataset, self.width_keys)

  def example_batch(self, batch_size: int = 1, time: int = 1) -> dict:
    """Zeros of the shapes and dtypes of a batch (without targets or labels)."""
    return arrays.zeros_batch(self.sizes, batch_size, time)

  def export_axes(self) -> dict[str, tuple[str | None, ...]]:
    """The axes of each `example_batch()` array the export leaves symbolic, by name (one
    name, one size), or None for an axis fixed at the example's size: 'batch' first, then
    'time' for `time_keys`, by default."""
    return arrays.named_axes(self.example_batch(), self.time_keys)

  def epoch_transform(self, train_set: dict, seed: int, epoch: int) -> dict:
    """Optional: the training set as epoch `epoch` sees it (augmentation); unchanged by
    default, at no cost.

    Contract: a pure function of (seed, epoch, example index), so every epoch draws
    afresh and a killed run resumes bit-identically (the loop asks again for the epoch it
    resumes in). It keeps every key, shape, dtype and `lengths` of `train_set` (the
    epoch's batch plan is made from the lengths), and does not modify `train_set`.

    Args:
      train_set: what `read('train')` gave (after `fit`).
      seed: the run's `config.seed` (an ensemble's members share the epoch's draw).
      epoch: counts from 1.
    """
    return train_set

  # ------------------------------------------------------------------------ model

  def make_model(self) -> nn.Module:
    """The Flax module this task trains, built from `model` and the fitted `sizes` in one
    step (`Model.from_config(self.model, **sizes)`, `bilstm_jax.models`)."""
    raise NotImplementedError

  def model_inputs(self, batch: dict) -> tuple:
    """The model's positional arguments from a batch: (inputs, lengths) by default.

    Args:
      batch: `inputs` float32[batch, time, features] or int32[batch, time], and
        `lengths` int32[batch].
    """
    return (batch['inputs'], batch['lengths'])

  # ---------------------------------------------- what is learned: the objective's

  def _learned(self, hook: str) -> Objective:
    if self.objective is None:
      raise NotImplementedError(f'{type(self).__name__} has no objective and no {hook}.')
    return self.objective

  @property
  def metrics(self) -> tuple[str, ...]:
    """The metric names ('loss' first): the objective's."""
    return self._learned('metrics').metrics

  @property
  def metric_modes(self) -> dict[str, str]:
    """{metric: 'min' or 'max'}: the objective's."""
    return self._learned('metric_modes').metric_modes

  @property
  def per_step(self) -> bool:
    """Labels or targets per step (else one per sequence): the objective's (True)."""
    return True if self.objective is None else self.objective.per_step

  @property
  def label_key(self) -> str:
    """What a labelled dataset holds besides inputs: the objective's ('labels')."""
    return 'labels' if self.objective is None else self.objective.label_key

  @property
  def prediction_time_keys(self) -> tuple[str, ...]:
    """The `predictions` with a time axis: the objective's (none)."""
    return () if self.objective is None else self.objective.prediction_time_keys

  def loss(self, outputs: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
    """The training loss as a (sum, weight) pair over the batch's valid steps or sequences.

    Args:
      outputs: the model's output, e.g. float32[batch, time, classes] logits.
      batch: the batch dict, with `lengths` int32[batch] and the task's `label_key`.

    Returns:
      (sum, weight), float32 scalars; the loss is sum / weight, so a short last batch
      weighs as much as its valid steps.
    """
    return self._learned('loss').loss(outputs, batch)

  def eval_sums(self, outputs: jax.Array, batch: dict) -> dict:
    """{metric: (sum, count)} float32 scalars over a batch, for every name in `metrics`."""
    return self._learned('eval_sums').eval_sums(outputs, batch)

  @property
  def host_metric_modes(self) -> dict[str, str]:
    """Optional: {name: 'min' or 'max'} of the `host_metrics`, which `train.metric` may
    name as 'dev_<name>': the objective's (none without one), or a class attribute."""
    return {} if self.objective is None else dict(self.objective.host_metric_modes)

  def host_metrics(self, dataset: dict, outputs: np.ndarray) -> dict[str, float]:
    """Optional: the `host_metric_modes` metrics of a labelled dataset, computed on the host
    (for example a beam search's error rate): the objective's (none without one).

    Called at every evaluation of the dev set, so it should take well under an epoch's
    time. For an ensemble, `outputs` is the members' combined output (`combine`).

    Args:
      dataset: the labelled dataset (`read`).
      outputs: the model's output for every example, in order: numpy [n, ...] at the
        dataset's full padded length.

    Returns:
      {name: value} for every name in `host_metric_modes`.
    """
    return {} if self.objective is None else self.objective.host_metrics(dataset, outputs)

  def combine(self, member_outputs: jax.Array) -> jax.Array:
    """The ensemble's output from float[N, ...] member outputs: the objective's (the
    mean without one)."""
    if self.objective is None:
      return member_outputs.mean(0)
    return self.objective.combine(member_outputs)

  # ------------------------------------------------------------------ prediction

  def predictions(self, outputs: jax.Array, batch: dict) -> dict:
    """The predictions of a batch as {name: array} (traceable, so it runs under jit).

    Arrays named in `prediction_time_keys` are [batch, time, ...]; the rest [batch, ...].
    """
    return self._learned('predictions').predictions(outputs, batch)

  def encode(self, examples: list) -> dict:
    """Optional: a dataset (as `read(labelled=False)` makes) from examples in memory, for
    `Trained.predict(list)`; the text tasks take token lists or strings. None by default."""
    raise DataFileError(
      f'The {self.name} task predicts a split name, a file path or a dict of arrays, '
      f'not a {type(examples).__name__} of examples.'
    )

  def records(self, dataset: dict, predictions: dict, source) -> list[dict]:
    """Optional: the predictions in the task's own terms, one JSON-able dict per example.

    `--mode=predict` writes them as JSON lines and `Trained.predict` returns them, so the
    two agree. By default each example's "index", "length" and every prediction array
    (cut to the length where it has a time axis: `prediction_time_keys` and an ensemble's
    '<name>_std' of them), as lists.

    Args:
      dataset: what `read(source, labelled=False)` (or `encode`) made: `lengths`
        int32[n] and the inputs.
      predictions: {name: array[n, ...]}: `predictions` over the whole dataset (numpy).
      source: what the caller named: a split or file path (str), the list given to
        `encode`, or a dict of arrays.

    Returns:
      n dicts, in the dataset's order.
    """
    keys = self.prediction_time_keys
    return files.prediction_rows(
      predictions, dataset['lengths'], keys + tuple(f'{k}_std' for k in keys)
    )

  # ------------------------------------------------------------------- reporting

  def report(
    self,
    predict: Callable[[dict], dict],
    dev_set: dict,
    dev_metrics: dict,
    print_fn,
    plots_dir: str | None,
  ) -> dict:
    """Extra summary fields, lines and plots at the end of a run (none by default).

    Args:
      predict: dataset -> the `predictions` dict of its first examples (numpy).
      dev_set: the dev dataset.
      dev_metrics: the final dev metrics {metric: value}.
      print_fn: prints a line.
      plots_dir: where to write PNGs, or None (another process writes them).
    """
    return {}

  def final_line(self, train: dict, dev: dict, extra: dict) -> str:
    """The last line a run prints: every metric on the train and dev sets."""
    parts = [f'{m} train {train[m]:.6f} dev {dev[m]:.6f}' for m in self.metrics]
    return 'Final ' + ';  '.join(parts)
