"""Tagging words from CoNLL-U or CoNLL column files: POS tags, or entity tags with span
precision, recall and F1 (conlleval's rules) and an optional linear-chain CRF.

The words, characters, vocabularies and word vectors are `bilstm_jax.tasks.text`'s.
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
from bilstm_jax.tasks import losses
from bilstm_jax.tasks.span_metrics import scheme_tables, span_sums
from bilstm_jax.tasks.text import _TextTask, read_file


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
  prediction_time_keys: ClassVar[tuple[str, ...]] = ('labels', 'confidence')

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
  def metrics(self) -> tuple[str, ...]:
    return ('loss', 'accuracy') + (('precision', 'recall', 'f1') if self.entities else ())

  @property
  def metric_modes(self) -> dict:
    return {m: 'min' if m == 'loss' else 'max' for m in self.metrics}

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

  def _tables(self):
    return scheme_tables(self.label_names())

  def loss(self, outputs, batch):
    if not self.crf:
      return losses.step_cross_entropy(outputs, batch['labels'], batch['lengths'])
    ll = crf_lib.crf_log_likelihood(
      outputs['emissions'],
      batch['labels'],
      batch['lengths'],
      outputs['transitions'],
      outputs['start'],
      outputs['end'],
    )
    # Per token, like the softmax loss, so the two heads' losses and rates compare.
    return -ll.sum(), batch['lengths'].sum().astype(jnp.float32)

  def decode(self, outputs, lengths):
    """(tag ids int32[b, t], -1 at padding; confidence float32[b, t]).

    With the CRF: the Viterbi path, and each tag's marginal probability (the gradient of
    log Z with respect to the emissions); else the argmax and its softmax probability.
    """
    if not self.crf:
      probs = jax.nn.softmax(outputs.astype(jnp.float32), -1)
      tags = jnp.argmax(probs, -1).astype(jnp.int32)
      mask = losses.step_mask(lengths, tags.shape[1])
      return jnp.where(mask, tags, -1), probs.max(-1)
    scores = (outputs['transitions'], outputs['start'], outputs['end'])
    tags, _ = crf_lib.viterbi_decode(outputs['emissions'], lengths, *scores)

    def log_z(emissions):
      return crf_lib.crf_log_partition(emissions, lengths, *scores).sum()

    marginals = jax.grad(log_z)(outputs['emissions'])
    conf = jnp.take_along_axis(marginals, jnp.maximum(tags, 0)[..., None], -1)[..., 0]
    return tags, conf

  def eval_sums(self, outputs, batch):
    labels, lengths = batch['labels'], batch['lengths']
    tags, _ = self.decode(outputs, lengths)
    mask = losses.step_mask(lengths, labels.shape[1])
    sums = {
      'loss': self.loss(outputs, batch),
      'accuracy': (
        ((tags == labels) & mask).sum().astype(jnp.float32),
        mask.sum().astype(jnp.float32),
      ),
    }
    if self.entities:
      sums.update(span_sums(labels, tags, lengths, *self._tables()))
    return sums

  def combine(self, member_outputs):
    """Softmax: the log of the members' mean probabilities. CRF: the members' mean
    emissions and transition scores, decoded by one Viterbi pass."""
    if self.crf:
      return jax.tree.map(lambda x: x.mean(0), member_outputs)
    return losses.mean_probability_logits(member_outputs)

  def predictions(self, outputs, batch):
    tags, conf = self.decode(outputs, batch['lengths'])
    return {'labels': tags, 'confidence': conf}

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

  def final_line(self, train, dev, extra):
    parts = [f'{m} train {train[m]:.6f} dev {dev[m]:.6f}' for m in self.metrics]
    return 'Final ' + ';  '.join(parts)
