"""Sentence classification from `sentence<TAB>label` files (GLUE SST-2 and the like):
the text source (`bilstm_jax.tasks.text`) plus `SequenceLabels`, the words pooled over
valid words only."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from bilstm_jax.data import vocab
from bilstm_jax.errors import DataFileError
from bilstm_jax.models.text import TextClassifier
from bilstm_jax.tasks.objectives import SequenceLabels
from bilstm_jax.tasks.text import _TextTask, read_file


@dataclasses.dataclass(frozen=True)
class TextClassificationTask(_TextTask):
  """A label per sentence from `sentence<TAB>label` files; words are whitespace tokens.

  Attributes:
    pooling: 'mean', 'max' or 'attention' over valid words.
  """

  name: ClassVar[str] = 'text_classification'
  objective: ClassVar[SequenceLabels] = SequenceLabels()

  pooling: str = 'max'

  @classmethod
  def from_config(cls, config):
    return cls(**cls._common(config), pooling=config.model.get('pooling', 'max'))

  def _sentences(self, path):
    rows = read_file(path, 'read_tsv')
    return [r.text.split() for r in rows], [r.label for r in rows]

  def _label_vocab(self, labels):
    return vocab.Vocabulary.build([[x] for x in labels], pad_token=None, unk_token=None)

  def _encode_labels(self, labels, label_vocab, dataset, path):
    try:
      return np.array(label_vocab.encode(labels), np.int32)
    except KeyError as e:
      raise DataFileError(f'{path}: label {e.args[0]!r} is not in the training data.') from e

  def make_model(self):
    return TextClassifier(self.make_encoder(), self.sizes['num_classes'], self.pooling)

  def records(self, dataset, predictions, source):
    """{'text', 'label', 'probability', 'probabilities': {label: p}} per sentence; an empty
    sentence has label None."""
    names = self.label_names()
    out = []
    for i, tokens in enumerate(self.source_tokens(dataset, source)):
      probs = [round(float(p), 6) for p in predictions['probabilities'][i]]
      out.append(
        {
          'text': ' '.join(tokens),
          'label': names[int(predictions['label'][i])] if tokens else None,
          'probability': round(float(predictions['probability'][i]), 6),
          'probabilities': dict(zip(names, probs, strict=True)),
        }
      )
    return out
