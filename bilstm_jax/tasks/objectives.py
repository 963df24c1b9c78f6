"""Objectives: what a task learns, apart from where its data comes from.

A task is a data source (`read`, `fit`, `spec`: files, wavs, text, generated data) plus an
objective: the label check, the loss, the metrics, the predictions and how ensemble
members combine, and any metrics computed on the host. These serve any source whose
dataset holds the arrays they name, so text tagging, speech framewise labels and a task
of your own share one tagging objective, and a transcription task of your own composes
the CTC objective `fsdd_ctc` uses:

  StepLabels      an integer label per step (`labels` int[n, time]), softmax
                  cross-entropy, accuracy (and entity spans' precision, recall and F1)
  SequenceLabels  one integer label per sequence (`labels` int[n])
  StepTargets     float targets per step (`targets` float[n, time, outputs]), MSE
  CTCLabels       a label string per sequence from per-step logits, CTC loss, greedy
                  and beam-search label error rates (`bilstm_jax.tasks.ctc_objective`)

A task names its objective as the class attribute `objective` (or a property, where it
depends on what `fit` found or on the task's settings) and `bilstm_jax.tasks.Task`
delegates its learning hooks to it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.errors import DataFileError
from bilstm_jax.tasks import losses
from bilstm_jax.tasks.arrays import check_labels
from bilstm_jax.tasks.span_metrics import scheme_tables, span_sums


def _loss_first(metrics: tuple[str, ...]) -> dict[str, str]:
  return {m: 'min' if m == 'loss' else 'max' for m in metrics}


@dataclasses.dataclass(frozen=True)
class Objective:
  """What is learned: the base of the objectives (see the module docstring).

  Every hook is traceable (it runs under jit) except `check` and `host_metrics`, which run
  on numpy data.
  """

  per_step: ClassVar[bool] = True  # labels or targets per step (else one per sequence)
  label_key: ClassVar[str] = 'labels'  # what a labelled dataset holds besides inputs
  prediction_time_keys: ClassVar[tuple[str, ...]] = ()  # predictions with a time axis
  # Metrics computed on the host from a whole dataset's outputs (`host_metrics`), {name:
  # 'min' or 'max'}; none by default.
  host_metric_modes: ClassVar[dict[str, str]] = {}

  @property
  def metrics(self) -> tuple[str, ...]:
    """The metric names, 'loss' first."""
    raise NotImplementedError

  @property
  def metric_modes(self) -> dict[str, str]:
    """{metric: 'min' or 'max'}: which way is better."""
    raise NotImplementedError

  def check(self, dataset: dict, where: str, sizes: dict) -> None:
    """Raises DataFileError naming `where` if the dataset's labels do not fit.

    Args:
      dataset: a dataset dict (`lengths` int[n]; the labels, if labelled).
      where: the file or split, for the message.
      sizes: the task's fitted sizes (empty before `fit`).
    """

  def loss(self, outputs, batch: dict) -> tuple[jax.Array, jax.Array]:
    """The training loss as (sum, weight) float32 scalars over the valid steps or
    sequences; the loss is sum / weight."""
    raise NotImplementedError

  def eval_sums(self, outputs, batch: dict) -> dict:
    """{metric: (sum, count)} float32 scalars over a batch, for every name in `metrics`."""
    raise NotImplementedError

  def host_metrics(self, dataset: dict, outputs: np.ndarray) -> dict[str, float]:
    """The `host_metric_modes` metrics of a labelled dataset, on the host (numpy, not
    traced); none by default. `Task.host_metrics` says when it is called.

    Args:
      dataset: the labelled dataset.
      outputs: the model's (or an ensemble's combined) output for every example: numpy
        [n, ...] at the dataset's full padded length.
    """
    return {}

  def combine(self, member_outputs):
    """The ensemble's output from float[N, ...] member outputs: their mean by default."""
    return member_outputs.mean(0)

  def predictions(self, outputs, batch: dict) -> dict:
    """The predictions of a batch as {name: array}; `prediction_time_keys` have a time
    axis."""
    raise NotImplementedError


class _Labels(Objective):
  """Softmax over integer labels: the ensemble averages probabilities."""

  def combine(self, member_outputs):
    """The log of the members' mean probabilities (so argmax and cross-entropy use them)."""
    return losses.mean_probability_logits(member_outputs)

  def _check_labels(self, dataset: dict, where: str, sizes: dict, ndim: int, hint: str):
    if 'labels' not in dataset:
      return
    if dataset['labels'].ndim != ndim:
      raise DataFileError(
        f'{where}: {hint[0]}; got shape {list(dataset["labels"].shape)} {hint[1]}.'
      )
    if 'num_classes' in sizes:
      check_labels(dataset['labels'], dataset['lengths'], sizes['num_classes'], where)


@dataclasses.dataclass(frozen=True)
class StepLabels(_Labels):
  """An integer label per step (tags, framewise labels), softmax cross-entropy per step.

  Metrics: `loss` (cross-entropy per real step), `accuracy` per real step and, with
  `entities`, entity `precision`, `recall` and `f1` (`bilstm_jax.tasks.span_metrics`).
  Predictions: `labels` int32[batch, time] (-1 past each length) and their `confidence`
  float32[batch, time] (the softmax probability).

  Attributes:
    entities: the labels are entity tags (BIO/BIOES names): score their spans too.
    tag_names: each label's name, for `entities` (known after the task's `fit`).
  """

  entities: bool = False
  tag_names: tuple[str, ...] = ()

  prediction_time_keys: ClassVar[tuple[str, ...]] = ('labels', 'confidence')

  @property
  def metrics(self) -> tuple[str, ...]:
    """'loss', 'accuracy', and 'precision', 'recall', 'f1' with `entities`."""
    return ('loss', 'accuracy') + (('precision', 'recall', 'f1') if self.entities else ())

  @property
  def metric_modes(self) -> dict[str, str]:
    """'min' for the loss, 'max' for the rest."""
    return _loss_first(self.metrics)

  def check(self, dataset, where, sizes):
    """The labels must be int[n, time], within the fitted classes."""
    hint = (
      'tagging needs a label per step (labels int[n, time])',
      '(one per sequence: use data.task=classification)',
    )
    self._check_labels(dataset, where, sizes, 2, hint)

  def loss(self, outputs, batch):
    """Cross-entropy per step of logits float[batch, time, classes] against `labels`
    int32[batch, time]."""
    return losses.step_cross_entropy(outputs, batch['labels'], batch['lengths'])

  def decode(self, outputs, lengths):
    """(labels int32[batch, time], -1 past each length; confidence float32[batch, time]):
    the most probable class per step and its probability."""
    probs = jax.nn.softmax(outputs.astype(jnp.float32), -1)
    tags = jnp.argmax(probs, -1).astype(jnp.int32)
    mask = losses.step_mask(lengths, tags.shape[1])
    return jnp.where(mask, tags, -1), probs.max(-1)

  def eval_sums(self, outputs, batch):
    """`loss`, and `accuracy` of the decoded labels per real step (and the entity span
    metrics), as (sum, count) pairs."""
    labels, lengths = batch['labels'], batch['lengths']
    tags, _ = self.decode(outputs, lengths)
    mask = losses.step_mask(lengths, labels.shape[1])
    hits = ((tags == labels) & mask).sum().astype(jnp.float32)
    sums = {'loss': self.loss(outputs, batch), 'accuracy': (hits, mask.sum().astype(jnp.float32))}
    if self.entities:
      sums.update(span_sums(labels, tags, lengths, *scheme_tables(list(self.tag_names))))
    return sums

  def predictions(self, outputs, batch):
    """`labels` int32[batch, time] and `confidence` float32[batch, time]."""
    tags, confidence = self.decode(outputs, batch['lengths'])
    return {'labels': tags, 'confidence': confidence}


@dataclasses.dataclass(frozen=True)
class SequenceLabels(_Labels):
  """One integer label per sequence, from logits float[batch, classes].

  Metrics: `loss` (cross-entropy per sequence) and `accuracy`. Predictions: `label`
  int32[batch], its `probability` float32[batch] and every class's `probabilities`
  float32[batch, classes].
  """

  per_step: ClassVar[bool] = False

  @property
  def metrics(self) -> tuple[str, ...]:
    """'loss' and 'accuracy'."""
    return ('loss', 'accuracy')

  @property
  def metric_modes(self) -> dict[str, str]:
    """'min' for the loss, 'max' for the accuracy."""
    return _loss_first(self.metrics)

  def check(self, dataset, where, sizes):
    """No empty example; the labels must be int[n], within the fitted classes."""
    if (dataset['lengths'] == 0).any():
      i = int(np.argmax(dataset['lengths'] == 0))
      raise DataFileError(f'{where}: example {i} is empty (length 0); it has nothing to classify.')
    hint = (
      'classification needs one label per sequence (labels int[n])',
      '(one per step: use data.task=tagging)',
    )
    self._check_labels(dataset, where, sizes, 1, hint)

  def loss(self, outputs, batch):
    """Cross-entropy per sequence against `labels` int32[batch]."""
    return losses.sequence_cross_entropy(outputs, batch['labels'], batch['lengths'])

  def eval_sums(self, outputs, batch):
    """`loss` (cross-entropy) and `accuracy` per sequence, as (sum, count) pairs."""
    return {
      'loss': self.loss(outputs, batch),
      'accuracy': losses.sequence_accuracy(outputs, batch['labels'], batch['lengths']),
    }

  def predictions(self, outputs, batch):
    """`label`, its `probability` and every class's `probabilities`."""
    probs = jax.nn.softmax(outputs.astype(jnp.float32), -1)
    return {
      'label': jnp.argmax(probs, -1).astype(jnp.int32),
      'probability': probs.max(-1),
      'probabilities': probs,
    }


@dataclasses.dataclass(frozen=True)
class StepTargets(Objective):
  """Float targets per step (`targets` float[n, time, outputs]), masked squared error.

  Metrics: `loss` (MSE) and `mae` over the real steps and outputs. Predictions:
  `predictions` float32[batch, time, outputs], the model's outputs.
  """

  label_key: ClassVar[str] = 'targets'
  prediction_time_keys: ClassVar[tuple[str, ...]] = ('predictions',)

  @property
  def metrics(self) -> tuple[str, ...]:
    """'loss' and 'mae'."""
    return ('loss', 'mae')

  @property
  def metric_modes(self) -> dict[str, str]:
    """Both 'min'."""
    return {'loss': 'min', 'mae': 'min'}

  def check(self, dataset, where, sizes):
    """The targets' output size must match the training data's."""
    outputs = sizes.get('output_size')
    if 'targets' in dataset and outputs and dataset['targets'].shape[-1] != outputs:
      raise DataFileError(
        f'{where}: targets have {dataset["targets"].shape[-1]} outputs per step; the model '
        f'has {outputs} (as in the training data).'
      )

  def loss(self, outputs, batch):
    """Masked squared error of outputs against `targets` float32[batch, time, outputs]."""
    return losses.masked_mse(outputs, batch['targets'], batch['lengths'])

  def eval_sums(self, outputs, batch):
    """`loss` (MSE) and `mae` over the valid steps, as (sum, count) pairs."""
    return {
      'loss': self.loss(outputs, batch),
      'mae': losses.masked_abs_error(outputs, batch['targets'], batch['lengths']),
    }

  def predictions(self, outputs, batch):
    """{'predictions': float32[batch, time, outputs]}."""
    return {'predictions': outputs}
