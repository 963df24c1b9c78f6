"""Text tasks trained from raw files: tagging (POS, NER with an optional CRF) and sentences.

  text_tagging         CoNLL-U (`data.format='conllu'`) or CoNLL columns ('conll'); a tag
                       per word; token accuracy, and for entities (`data.entities`) span
                       precision, recall and F1 with conlleval's rules
  text_classification  `sentence<TAB>label` TSV (GLUE SST-2); a label per sentence

Vocabularies (words, optionally lowercased; characters, keeping case; tags or labels) are
built from the training file and saved in the task's `spec()`, so the workdir's
`task.json` holds them and evaluation and prediction encode text with the very same ids.

Datasets are dicts of numpy arrays: `inputs` int32[n, t] word ids (0 padding, 1 unknown),
`chars` int32[n, t, w] character ids (w: the longest word, capped at `max_word_len`),
`lengths` int32[n], and `labels` (int32[n, t] tag ids, or int32[n]).

Span F1 is a ratio of sums (F1 = 2 correct / (gold + predicted)), so it is computed on
device in `eval_sums` like every other metric, and `train.metric=dev_f1` with
`train.metric_mode=max` ranks checkpoints and stops early by it.

Reading for prediction (`labelled=False`): a `.txt` file is raw text, one whitespace-
tokenised sentence per line (`bilstm_jax.data.text.read_raw`); any other file is read in
the task's own format, its tags ignored. `bilstm_jax.readable.predict_sentences` turns the
predicted ids back into tags or labels.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.data import tag_schemes, text, vocab
from bilstm_jax.errors import CheckpointError, DataFileError
from bilstm_jax.heads import crf as crf_lib
from bilstm_jax.tasks import base, losses, text_models
from bilstm_jax.tasks.span_metrics import scheme_tables, span_sums

RAW_SUFFIXES = ('.txt',)  # raw text: one whitespace-tokenised sentence per line
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_file(path: str) -> str:
  """`path` as given if it exists, else relative to the repository root (configs name
  `../shared/data/...` from there), else as given (the reader then names it)."""
  if not path or os.path.isabs(path) or os.path.exists(path):
    return path
  alt = os.path.join(REPO, path)
  return alt if os.path.exists(alt) else path


# ----------------------------------------------------------------------------- vocabularies


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, mtime: float, reader: str, args: tuple):
  del mtime  # part of the key only: a rewritten file is read again
  return getattr(text, reader)(path, *args)


def read_file(path: str, reader: str, *args):
  path = find_file(path)
  mtime = os.path.getmtime(path) if os.path.exists(path) else 0.0
  return _read_cached(path, mtime, reader, args)


# ------------------------------------------------------------------------- shared base


@dataclasses.dataclass(frozen=True)
class _TextTask(base.Task):
  """Fields shared by the text tasks (plain values; `from_config` fills them).

  Attributes:
    lowercase: lowercase words for the word vocabulary (characters keep case).
    min_count: words seen fewer times in training map to '<unk>'.
    max_vocab: at most this many words (0: no limit).
    chars: character features ('' none, 'cnn' or 'lstm').
    max_word_len: characters kept per word.
    vocabs: {'words', 'chars', 'labels'} Vocabulary objects, set by `fit`/`with_spec`.
  """

  lowercase: bool = False
  min_count: int = 1
  max_vocab: int = 0
  chars: str = 'cnn'
  max_word_len: int = 20
  vocabs: dict = dataclasses.field(default_factory=dict)

  @classmethod
  def _common(cls, config) -> dict:
    d, m = config.data, config.model
    enc = {
      'hidden_size': m.hidden_size,
      'num_layers': m.num_layers,
      'dropout': m.dropout,
      'embed_size': m.embed_size,
      'embed_dropout': m.embed_dropout,
      'word_dropout': m.get('word_dropout', 0.0),
      'adversarial': m.get('adversarial', 0.0),
      'char_embed_size': m.get('char_embed_size', 30),
      'char_features': m.get('char_features', 50),
      'norm': m.get('norm', ''),
      'dtype': m.dtype,
      'impl': m.get('impl') or None,
    }
    return dict(
      sources={s: find_file(d.get(s) or '') for s in base.SPLITS},
      model=enc,
      lowercase=d.get('lowercase', False),
      min_count=d.get('min_count', 1),
      max_vocab=d.get('max_vocab', 0),
      chars=m.get('chars', 'cnn'),
      max_word_len=d.get('max_word_len', 20),
    )

  def resolve(self, source: str) -> str:
    if source in base.SPLITS:
      path = self.sources.get(source) or ''
      if not path:
        raise DataFileError(f'No {source} data: set config.data.{source} to a file.')
      return path
    return find_file(source)

  def _sentences(self, path: str) -> tuple[list[list[str]], list]:
    """(token lists, labels: a tag list per sentence or a label per sentence) of a file."""
    raise NotImplementedError

  def _build_vocabs(self) -> dict:
    tokens, labels = self._sentences(self.resolve('train'))
    words = vocab.Vocabulary.build(
      tokens,
      min_count=self.min_count,
      max_size=self.max_vocab or None,
      lowercase=self.lowercase,
    )
    out = {'words': words}
    if self.chars:
      out['chars'] = vocab.Vocabulary.build(w for words in tokens for w in words)
    out['labels'] = self._label_vocab(labels)
    return out

  def _label_vocab(self, labels) -> vocab.Vocabulary:
    raise NotImplementedError

  def _vocabs(self) -> dict:
    # Before `fit` (the app reads the training split first), the vocabularies come from the
    # training file; building them is deterministic, so `fit` finds the same ones.
    return self.vocabs or self._build_vocabs()

  def tokens(self, path: str, labelled: bool = True) -> tuple[list[list[str]], list | None]:
    """(token lists, labels or None) of a file; unlabelled `.txt` files are raw text."""
    if not labelled and path.endswith(RAW_SUFFIXES):
      return read_file(path, 'read_raw'), None
    return self._sentences(path)

  def encode(self, sentences: list[list[str]]) -> dict:
    """Word (and character) id arrays of tokenised sentences, with this task's vocabularies."""
    vocabs = self._vocabs()
    return vocab.encode_sentences(
      sentences, vocabs['words'], vocabs.get('chars'), self.max_word_len
    )

  def read(self, source: str, labelled: bool = True) -> dict:
    """A split or file as a dataset dict (see the module docstring)."""
    path = self.resolve(source)
    tokens, labels = self.tokens(path, labelled)
    dataset = self.encode(tokens)
    if labels is not None:
      dataset['labels'] = self._encode_labels(labels, self._vocabs()['labels'], dataset, path)
    return dataset

  def _encode_labels(self, labels, label_vocab, dataset, path) -> np.ndarray:
    raise NotImplementedError

  def check(self, dataset: dict, where: str) -> None:
    pass  # `read` builds every array from the vocabularies, so ids are in range

  def fit(self, train_set: dict):
    vocabs = self._vocabs()
    sizes = {'vocab_size': len(vocabs['words']), 'num_classes': len(vocabs['labels'])}
    if 'chars' in vocabs:
      sizes['char_vocab_size'] = len(vocabs['chars'])
    return dataclasses.replace(self, vocabs=vocabs, sizes=sizes)

  def spec(self) -> dict:
    return {'task': self.name, 'sizes': dict(self.sizes), **vocab.to_spec(self.vocabs)}

  def with_spec(self, spec: dict):
    task = super().with_spec(spec)
    vocabs = vocab.from_spec(spec, ('words', 'labels', 'chars')[: 3 if self.chars else 2])
    sizes = spec['sizes']
    found = {'vocab_size': len(vocabs['words']), 'num_classes': len(vocabs['labels'])}
    if 'chars' in vocabs:
      found['char_vocab_size'] = len(vocabs['chars'])
    if found != sizes or bool(self.chars) != ('chars' in vocabs):
      raise CheckpointError(
        f'task.json: vocabulary sizes {found} do not match the model sizes {sizes} '
        '(or the config asks for character features the saved run has not).'
      )
    return dataclasses.replace(task, vocabs=vocabs)

  @property
  def time_keys(self) -> tuple[str, ...]:
    keys = ('inputs', 'chars') if self.chars else ('inputs',)
    return keys + (('labels',) if self.per_step else ())

  def example_batch(self, batch_size: int = 1, time: int = 1) -> dict:
    batch = {
      'inputs': np.zeros((batch_size, time), np.int32),
      'lengths': np.full((batch_size,), time, np.int32),
    }
    if self.chars:
      batch['chars'] = np.zeros((batch_size, time, 1), np.int32)
    return batch

  def model_inputs(self, batch: dict) -> tuple:
    if self.chars:
      return (batch['inputs'], batch['lengths'], batch['chars'])
    return (batch['inputs'], batch['lengths'])

  def encoder_kwargs(self) -> dict:
    kwargs = dict(self.model)
    kwargs['dtype'] = base.dtype_from_name(kwargs.get('dtype', 'float32'))
    kwargs['vocab_size'] = self.sizes['vocab_size']
    kwargs['char_vocab_size'] = self.sizes.get('char_vocab_size', 0)
    kwargs['char_encoder'] = self.chars or 'cnn'
    return kwargs

  def label_names(self) -> list[str]:
    return list(self.vocabs['labels'].tokens)


# ---------------------------------------------------------------------------- tagging


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
    return text_models.TextTagger(
      encoder=self.encoder_kwargs(),
      num_tags=self.sizes['num_classes'],
      crf=self.crf,
      allowed=self._allowed(),
    )

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

  def final_line(self, train, dev, extra):
    parts = [f'{m} train {train[m]:.6f} dev {dev[m]:.6f}' for m in self.metrics]
    return 'Final ' + ';  '.join(parts)
