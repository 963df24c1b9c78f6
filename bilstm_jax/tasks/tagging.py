"""Tagging: an integer label at every step (POS tags, framewise labels), cross-entropy.

Data: `inputs` (features or token ids) and `labels` int[n, time] (see
`bilstm_jax.data.files`). The number of classes is the training data's largest label + 1.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from bilstm_jax.errors import DataFileError
from bilstm_jax.models import BiLSTMTagger, EncoderConfig
from bilstm_jax.tasks import base, losses


@dataclasses.dataclass(frozen=True)
class TaggingTask(base.Task):
  """Per-step classification; metrics: loss (cross-entropy per step) and accuracy."""

  name: ClassVar[str] = 'tagging'
  metrics: ClassVar[tuple[str, ...]] = ('loss', 'accuracy')
  metric_modes: ClassVar[dict] = {'loss': 'min', 'accuracy': 'max'}
  prediction_time_keys: ClassVar[tuple[str, ...]] = ('labels', 'confidence')

  @classmethod
  def from_config(cls, config):
    """The task with a config's data files and model block."""
    sources = {s: config.data.get(s) or '' for s in base.SPLITS}
    return cls(sources=sources, model=EncoderConfig.from_config(config.model))

  def check(self, dataset: dict, where: str) -> None:
    """As `Task.check`, and the labels must be int[batch, time], within the fitted classes."""
    super().check(dataset, where)
    if 'labels' in dataset:
      if dataset['labels'].ndim != 2:
        raise DataFileError(
          f'{where}: tagging needs a label per step (labels int[n, time]); got shape '
          f'{list(dataset["labels"].shape)} (one per sequence: use data.task=classification).'
        )
      if 'num_classes' in self.sizes:
        base.check_labels(dataset['labels'], dataset['lengths'], self.sizes['num_classes'], where)

  def make_model(self):
    """A `BiLSTMTagger` with the fitted number of classes."""
    return BiLSTMTagger.from_config(
      self.model, num_classes=self.sizes['num_classes'], vocab_size=self.sizes.get('vocab_size')
    )

  def loss(self, outputs, batch):
    """Cross-entropy per step of the logits against `labels` int32[batch, time]."""
    return losses.step_cross_entropy(outputs, batch['labels'], batch['lengths'])

  def eval_sums(self, outputs, batch):
    """`loss` (cross-entropy) and `accuracy` per step, as (sum, count) pairs."""
    return {
      'loss': losses.step_cross_entropy(outputs, batch['labels'], batch['lengths']),
      'accuracy': losses.step_accuracy(outputs, batch['labels'], batch['lengths']),
    }

  def combine(self, member_outputs):
    """The log of the members' mean probabilities (so argmax and cross-entropy use them)."""
    return losses.mean_probability_logits(member_outputs)

  def predictions(self, outputs, batch):
    """`labels` int32[batch, time] (the argmax) and `confidence` float32[batch, time] (its
    probability)."""
    probs = jax.nn.softmax(outputs.astype(jnp.float32), -1)
    return {'labels': jnp.argmax(probs, -1).astype(jnp.int32), 'confidence': probs.max(-1)}
