"""Tagging words from CoNLL-U or CoNLL column files: POS tags, or entity tags with span
precision, recall and F1 (conlleval's rules) and an optional linear-chain CRF.

The task is the text source (words, characters, vocabularies and word vectors:
`bilstm_jax.tasks.text`) plus a tagging objective: `StepLabels` (softmax per word, the
objective of every per-step task) or, with `crf`, `CRFTags` (the same metrics and
predictions, decoded by Viterbi).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from bilstm_jax.data import tag_schemes, vocab
from bilstm_jax.errors import DataFileError
from bilstm_jax.heads import crf as crf_lib
from bilstm_jax.models.text import TextTagger
from bilstm_jax.tasks.objectives import StepLabels
from bilstm_jax.tasks.text import _TextTask, read_file


@dataclasses.dataclass(frozen=True)
class CRFTags(StepLabels):
  """`StepLabels` scored by a linear-chain CRF: outputs are {'emissions' float[batch,
  time, tags], 'transitions' float[tags, tags], 'start', 'end' float[tags]}.

  The loss is the negative log-likelihood of the tag paths per word (like the softmax
  loss, so the two heads' losses and rates compare); labels are the Viterbi path and
  their confidence each tag's marginal probability.
  """

  def loss(self, outputs, batch):
    """The CRF's negative log-likelihood, summed, over the number of real words."""
    ll = crf_lib.crf_log_likelihood(
      outputs['emissions'],
      batch['labels'],
      batch['lengths'],
      outputs['transitions'],
      outputs['start'],
      outputs['end'],
    )
    return -ll.sum(), batch['lengths'].sum().astype(jnp.float32)

  def decode(self, outputs, lengths):
    """(the Viterbi path int32[b, t], -1 at padding; each tag's marginal probability
    float32[b, t], the gradient of log Z with respect to the emissions)."""
    scores = (outputs['transitions'], outputs['start'], outputs['end'])
    tags, _ = crf_lib.viterbi_decode(outputs['emissions'], lengths, *scores)

    def log_z(emissions):
      return crf_lib.crf_log_partition(emissions, lengths, *scores).sum()

    marginals = jax.grad(log_z)(outputs['emissions'])
    conf = jnp.take_along_axis(marginals, jnp.maximum(tags, 0)[..., None], -1)[..., 0]
    return tags, conf

  def combine(self, member_outputs):
    """The members' mean emissions and transition scores, decoded by one Viterbi pass."""
    return jax.tree.map(lambda x: x.mean(0), member_outputs)


@dataclasses.dataclass(frozen=True)
class TextTaggingTask(_TextTask):
  """Tags per word from CoNLL-U or CoNLL column files.

  Attributes:
    format: 'conllu' or 'conll'.
    tag_column: CoNLL-U 'upos'/'xpos', or a CoNLL column index ('-1' the last).
    token_column: CoNLL column of the words.
    scheme: '' keeps tags as written; 'BIO' or 'BIOES' converts entity tags (e.g.
      CoNLL-2003's IOB1) before the tag vocabulary is built; spans are unchanged.
    entities: report entity precision/recall/F1 (tags are entity tags).
    crf: a linear-chain CRF head (BIO/BIOES constraints when `scheme` names one).
  """

  name: ClassVar[str] = 'text_tagging'

  format: str = 'conllu'
  tag_column: str = 'upos'
  token_column: int = 0
  scheme: str = ''
  entities: bool = False
  crf: bool = False

  @classmethod
  def from_config(cls, config):
    d, m = config.data, config.model
    return cls(
      **cls._common(config),
      format=d.get('format', 'conllu'),
      tag_column=str(d.get('tag_column', 'upos')),
      token_column=d.get('token_column', 0),
      scheme=d.get('scheme', ''),
      entities=d.get('entities', False),
      crf=m.get('crf', False),
    )

  @property
  def objective(self) -> StepLabels:
    """`StepLabels`, or `CRFTags` with `crf`; with `entities`, scoring spans of the fitted
    tag names."""
    names = tuple(self.label_names()) if self.entities and self.vocabs else ()
    return (CRFTags if self.crf else StepLabels)(entities=self.entities, tag_names=names)

  def _sentences(self, path):
    if self.format == 'conllu':
      sents = read_file(path, 'read_conllu', self.tag_column)
    elif self.format == 'conll':
      sents = read_file(path, 'read_conll', self.token_column, int(self.tag_column))
    else:
      raise ValueError(f"data.format must be 'conllu' or 'conll'; got {self.format!r}.")
    tags = [s.tags for s in sents]
    if self.scheme:
      try:
        tags = [tag_schemes.convert(t, self.scheme) for t in tags]
      except ValueError as e:
        raise DataFileError(f'{path}: {e}') from e
    return [s.tokens for s in sents], tags

  def _label_vocab(self, labels):
    return vocab.Vocabulary.build(labels, pad_token=None, unk_token=None)

  def _encode_labels(self, labels, label_vocab, dataset, path):
    try:
      ids = [label_vocab.encode(t) for t in labels]
    except KeyError as e:
      raise DataFileError(f'{path}: tag {e.args[0]!r} is not in the training data.') from e
    return vocab.pad_ids(ids, dataset['inputs'].shape[1])[0]

  def _allowed(self):
    if not (self.crf and self.scheme in ('BIO', 'BIOES')):
      return None
    return crf_lib.allowed_transitions(self.label_names(), self.scheme)

  def make_model(self):
    return TextTagger(self.make_encoder(), self.sizes['num_classes'], self.crf, self._allowed())

  def records(self, dataset, predictions, source):
    """{'tokens', 'tags' (names), 'confidence' (each tag's probability)} per sentence."""
    names = self.label_names()
    out = []
    for i, tokens in enumerate(self.source_tokens(dataset, source)):
      n = len(tokens)
      tags = [names[j] for j in predictions['labels'][i, :n]]
      conf = [round(float(c), 6) for c in predictions['confidence'][i, :n]]
      out.append({'tokens': tokens, 'tags': tags, 'confidence': conf})
    return out
