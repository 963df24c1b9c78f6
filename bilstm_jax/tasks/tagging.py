"""Tagging: an integer label at every step (POS tags, framewise labels), cross-entropy.

Data: `inputs` (features or token ids) and `labels` int[n, time] (see
`bilstm_jax.data.files`). The number of classes is the training data's largest label + 1.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from bilstm_jax.models import BiLSTMTagger, EncoderConfig
from bilstm_jax.tasks import base
from bilstm_jax.tasks.objectives import StepLabels


@dataclasses.dataclass(frozen=True)
class TaggingTask(base.Task):
  """Per-step labels from .npz/.jsonl files: the default source + `StepLabels`.

  Metrics: loss (cross-entropy per step) and accuracy.
  """

  name: ClassVar[str] = 'tagging'
  objective: ClassVar[StepLabels] = StepLabels()

  @classmethod
  def from_config(cls, config):
    """The task with a config's data files and model block."""
    sources = {s: config.data.get(s) or '' for s in base.SPLITS}
    return cls(sources=sources, model=EncoderConfig.from_config(config.model))

  def make_model(self):
    """A `BiLSTMTagger` with the fitted number of classes."""
    return BiLSTMTagger.from_config(
      self.model, num_classes=self.sizes['num_classes'], vocab_size=self.sizes.get('vocab_size')
    )
