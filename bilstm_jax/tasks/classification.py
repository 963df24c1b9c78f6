"""Classification: one integer label per sequence, pooled over valid steps only.

Data: `inputs` (features or token ids) and `labels` int[n] (see `bilstm_jax.data.files`).
The number of classes is the training data's largest label + 1.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.errors import DataFileError
from bilstm_jax.models import BiLSTMClassifier, EncoderConfig
from bilstm_jax.tasks import base, losses


@dataclasses.dataclass(frozen=True)
class ClassificationTask(base.Task):
  """Sequence classification; metrics: loss (cross-entropy per sequence) and accuracy.

  Attributes:
    pooling: 'mean', 'max' or 'attention' over valid steps.
  """

  name: ClassVar[str] = 'classification'
  metrics: ClassVar[tuple[str, ...]] = ('loss', 'accuracy')
  metric_modes: ClassVar[dict] = {'loss': 'min', 'accuracy': 'max'}
  per_step: ClassVar[bool] = False

  pooling: str = 'mean'

  @classmethod
  def from_config(cls, config):
    """The task with a config's data files and model block."""
    sources = {s: config.data.get(s) or '' for s in base.SPLITS}
    return cls(
      sources=sources,
      model=EncoderConfig.from_config(config.model),
      pooling=config.model.get('pooling', 'mean'),
    )

  def check(self, dataset: dict, where: str) -> None:
    """As `Task.check`, and the labels must be int[batch], within the fitted classes."""
    super().check(dataset, where)
    if (dataset['lengths'] == 0).any():
      i = int(np.argmax(dataset['lengths'] == 0))
      raise DataFileError(f'{where}: example {i} is empty (length 0); it has nothing to classify.')
    if 'labels' in dataset:
      if dataset['labels'].ndim != 1:
        raise DataFileError(
          f'{where}: classification needs one label per sequence (labels int[n]); got shape '
          f'{list(dataset["labels"].shape)} (one per step: use data.task=tagging).'
        )
      if 'num_classes' in self.sizes:
        base.check_labels(dataset['labels'], dataset['lengths'], self.sizes['num_classes'], where)

  def make_model(self):
    """A `BiLSTMClassifier` with the fitted number of classes."""
    return BiLSTMClassifier.from_config(
      self.model,
      num_classes=self.sizes['num_classes'],
      pooling=self.pooling,
      vocab_size=self.sizes.get('vocab_size'),
    )

  def loss(self, outputs, batch):
    """Cross-entropy per sequence of the logits against `labels` int32[batch]."""
    return losses.sequence_cross_entropy(outputs, batch['labels'], batch['lengths'])

  def eval_sums(self, outputs, batch):
    """`loss` (cross-entropy) and `accuracy` per sequence, as (sum, count) pairs."""
    return {
      'loss': losses.sequence_cross_entropy(outputs, batch['labels'], batch['lengths']),
      'accuracy': losses.sequence_accuracy(outputs, batch['labels'], batch['lengths']),
    }

  def combine(self, member_outputs):
    """The log of the members' mean probabilities."""
    return losses.mean_probability_logits(member_outputs)

  def predictions(self, outputs, batch):
    """`label` int32[batch], its `probability` float32[batch] and every class's
    `probabilities` float32[batch, classes]."""
    probs = jax.nn.softmax(outputs.astype(jnp.float32), -1)
    return {
      'label': jnp.argmax(probs, -1).astype(jnp.int32),
      'probability': probs.max(-1),
      'probabilities': probs,
    }
