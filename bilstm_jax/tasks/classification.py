"""Classification: one integer label per sequence, pooled over valid steps only.

Data: `inputs` (features or token ids) and `labels` int[n] (see `bilstm_jax.data.files`).
The number of classes is the training data's largest label + 1.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from bilstm_jax.models import BiLSTMClassifier, EncoderConfig
from bilstm_jax.tasks import base
from bilstm_jax.tasks.objectives import SequenceLabels


@dataclasses.dataclass(frozen=True)
class ClassificationTask(base.Task):
  """A label per sequence from .npz/.jsonl files: the default source + `SequenceLabels`.

  Metrics: loss (cross-entropy per sequence) and accuracy.

  Attributes:
    pooling: 'mean', 'max' or 'attention' over valid steps.
  """

  name: ClassVar[str] = 'classification'
  objective: ClassVar[SequenceLabels] = SequenceLabels()

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

  def make_model(self):
    """A `BiLSTMClassifier` with the fitted number of classes."""
    return classifier(self)


def classifier(task: base.Task):
  """A `BiLSTMClassifier` of a fitted task with the `model` block and `pooling` field."""
  return BiLSTMClassifier.from_config(
    task.model,
    num_classes=task.sizes['num_classes'],
    pooling=task.pooling,
    vocab_size=task.sizes.get('vocab_size'),
  )
