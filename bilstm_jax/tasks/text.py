"""Text tasks trained from raw files: what tagging and sentence classification share.

  text_tagging         `bilstm_jax.tasks.text_tagging`: CoNLL-U (`data.format='conllu'`)
                       or CoNLL columns ('conll'); a tag per word; token accuracy, and for
                       entities (`data.entities`) span precision, recall and F1
  text_classification  `bilstm_jax.tasks.text_classification`: `sentence<TAB>label` TSV
                       (GLUE SST-2); a label per sentence

Vocabularies (words, optionally lowercased; characters, keeping case; tags or labels) are
built from the training file by `fit`, which reads no other file, and saved in the task's
`spec()`, so the workdir's `task.json` holds them and evaluation and prediction encode
text with the very same ids. Reading or encoding with an unfitted task is an error.

Pretrained word vectors (`model.word_vectors`: GloVe, word2vec or fastText files,
`bilstm_jax.data.word_vectors`) are read whole, rounded to float16 once, and kept beside
the trained vocabulary: every word with a vector gets it at training, evaluation and
prediction time, whether or not training saw the word, and no dev or test file is read to
choose them. The table goes into the workdir once (`save_artifacts`, 2 bytes a value: 40
MB for GloVe 6B 50d), never into the checkpoints, so a trained run does not need the file.

Datasets are dicts of numpy arrays: `inputs` int32[n, t] word ids (0 padding, 1 unknown),
`chars` int32[n, t, w] character ids (w: the longest word, capped at `max_word_len`; the
`width_keys`, which width buckets cut to a batch's longest word, `data.width_buckets`),
`vectors` float16[n, t, d] pretrained vectors (zero for a word without one), `lengths`
int32[n], and `labels` (int32[n, t] tag ids, or int32[n]).

Reading for prediction (`labelled=False`): a `.txt` file is raw text, one whitespace-
tokenised sentence per line (`bilstm_jax.data.text.read_raw`); any other file is read in
the task's own format, its tags ignored; `encode` takes token lists or strings in memory.
`records` (`bilstm_jax.load(workdir).predict`, `--mode=predict`) gives the words back with
their tag names or label.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, ClassVar

import numpy as np

from bilstm_jax.data import text, vocab, word_vectors
from bilstm_jax.errors import CheckpointError
from bilstm_jax.models.text import TextEncoder, TextEncoderConfig
from bilstm_jax.tasks import base

RAW_SUFFIXES = ('.txt',)  # raw text: one whitespace-tokenised sentence per line
VECTORS_FILE = 'word_vectors.npz'  # a workdir's copy of the pretrained vectors
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


@functools.lru_cache(maxsize=2)
def _vectors_cached(path: str, mtime: float) -> word_vectors.WordVectors:
  del mtime
  return word_vectors.read(path)


def split_sentences(sentences) -> list[list[str]]:
  """Token lists as given; strings split at whitespace."""
  return [s.split() if isinstance(s, str) else list(s) for s in sentences]


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
    word_vectors: a pretrained word-vector file ('' none; `data.word_vectors` formats).
      Every word with a vector gets it, in training or not (exact form, else lowercased);
      the table is saved in the workdir (`save_artifacts`), so a trained run no longer
      needs the file.
    vocabs: {'words', 'chars', 'labels'} Vocabulary objects, set by `fit`/`with_spec`.
    vectors: the `WordVectors` table, set by `fit`/`load_artifacts`.
    vectors_fingerprint: the table's fingerprint in a saved spec (`with_spec`), which
      `load_artifacts` checks the workdir's copy against.
  """

  lowercase: bool = False
  min_count: int = 1
  max_vocab: int = 0
  chars: str = 'cnn'
  max_word_len: int = 20
  word_vectors: str = ''
  vocabs: dict = dataclasses.field(default_factory=dict)
  vectors: Any = dataclasses.field(default=None, compare=False, repr=False)
  vectors_fingerprint: str = ''

  source_files: ClassVar[str] = 'a file'
  takes_word_vectors: ClassVar[bool] = True
  takes_adversarial: ClassVar[bool] = True  # the encoder marks its embeddings to perturb

  @classmethod
  def _common(cls, config) -> dict:
    d, m = config.data, config.model
    return dict(
      sources={s: find_file(d.get(s) or '') for s in base.SPLITS},
      model=TextEncoderConfig.from_config(m),
      lowercase=d.get('lowercase', False),
      min_count=d.get('min_count', 1),
      max_vocab=d.get('max_vocab', 0),
      chars=m.get('chars', 'cnn'),
      max_word_len=d.get('max_word_len', 20),
      word_vectors=find_file(m.get('word_vectors', '')),
    )

  def resolve(self, source: str) -> str:
    return find_file(super().resolve(source))

  def _sentences(self, path: str) -> tuple[list[list[str]], list]:
    """(token lists, labels: a tag list per sentence or a label per sentence) of a file."""
    raise NotImplementedError

  def _build_vocabs(self, path: str) -> dict:
    """The word, character and label vocabularies of a training file."""
    tokens, labels = self._sentences(path)
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
    if not self.vocabs:
      raise self.not_fitted('reading or encoding text (the vocabularies of the training file)')
    return self.vocabs

  @property
  def has_vectors(self) -> bool:
    return bool(self.word_vectors or self.sizes.get('vectors_dim'))

  def _vectors(self) -> word_vectors.WordVectors | None:
    if self.vectors is None and self.sizes.get('vectors_dim'):
      raise CheckpointError(
        f'The word vectors of a trained run are in its workdir ({VECTORS_FILE}): load the '
        'task with load_artifacts(workdir), as bilstm_jax.load does.'
      )
    return self.vectors

  def tokens(self, path: str, labelled: bool = True) -> tuple[list[list[str]], list | None]:
    """(token lists, labels or None) of a file; unlabelled `.txt` files are raw text."""
    if not labelled and path.endswith(RAW_SUFFIXES):
      return read_file(path, 'read_raw'), None
    return self._sentences(path)

  def encode(self, sentences: list) -> dict:
    """Word (and character) id arrays of sentences, with this task's vocabularies.

    Args:
      sentences: token lists, or strings (split at whitespace).
    """
    sentences = split_sentences(sentences)
    vocabs = self._vocabs()
    out = vocab.encode_sentences(sentences, vocabs['words'], vocabs.get('chars'), self.max_word_len)
    if self.has_vectors:
      out['vectors'] = self._vectors().embed(sentences, out['inputs'].shape[1])
    return out

  def source_tokens(self, dataset: dict, source) -> list[list[str]]:
    """The words of each example `read(source, labelled=False)` or `encode(source)` made;
    for a dict of id arrays, the vocabulary's words (unknown ones as '<unk>')."""
    if isinstance(source, str):
      return self.tokens(self.resolve(source), labelled=False)[0]
    if isinstance(source, list | tuple):
      return split_sentences(source)
    words = self.vocabs['words'].tokens
    pairs = zip(dataset['inputs'], dataset['lengths'], strict=True)
    return [[words[i] for i in ids[:n]] for ids, n in pairs]

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

  def fit(self, source: str = 'train'):
    """This task with the vocabularies of the training file (`source`: 'train' or a path)
    and the pretrained vectors (`word_vectors`), if any; no other file is read."""
    vocabs = self._build_vocabs(self.resolve(source))
    sizes = {'vocab_size': len(vocabs['words']), 'num_classes': len(vocabs['labels'])}
    if 'chars' in vocabs:
      sizes['char_vocab_size'] = len(vocabs['chars'])
    vectors = None
    if self.word_vectors:
      path = self.word_vectors
      vectors = _vectors_cached(path, os.path.getmtime(path) if os.path.exists(path) else 0.0)
      sizes['vectors_dim'] = vectors.dim
    return dataclasses.replace(self, vocabs=vocabs, sizes=sizes, vectors=vectors)

  def spec(self) -> dict:
    spec = {**super().spec(), **vocab.to_spec(self.vocabs)}
    if self.vectors is not None:
      spec['word_vectors'] = self._vectors_record(self.vectors)
    return spec

  @staticmethod
  def _vectors_record(vectors) -> dict:
    return {
      'file': VECTORS_FILE,
      'rows': len(vectors),
      'dim': vectors.dim,
      'fingerprint': vectors.fingerprint(),
    }

  def save_artifacts(self, directory: str) -> None:
    """Writes the word-vector table (float16, once per workdir) unless it is there."""
    if self.vectors is None:
      return
    path = os.path.join(directory, VECTORS_FILE)
    try:
      if word_vectors.WordVectors.load(path).fingerprint() == self.vectors.fingerprint():
        return
    except CheckpointError:
      pass  # missing or damaged: written afresh
    self.vectors.save(path)

  def load_artifacts(self, directory: str):
    if not self.sizes.get('vectors_dim'):
      return self
    path = os.path.join(directory, VECTORS_FILE)
    vectors = word_vectors.WordVectors.load(path)
    if vectors.fingerprint() != self.vectors_fingerprint:
      raise CheckpointError(
        f'{path} is not the vector table the run was trained with (its fingerprint differs '
        'from task.json).'
      )
    return dataclasses.replace(self, vectors=vectors)

  def with_spec(self, spec: dict):
    task = super().with_spec(spec)
    vocabs = vocab.from_spec(spec, ('words', 'labels', 'chars')[: 3 if self.chars else 2])
    sizes = spec['sizes']
    found = {'vocab_size': len(vocabs['words']), 'num_classes': len(vocabs['labels'])}
    if 'chars' in vocabs:
      found['char_vocab_size'] = len(vocabs['chars'])
    saved_vectors = spec.get('word_vectors')
    if isinstance(saved_vectors, dict) and isinstance(saved_vectors.get('dim'), int):
      found['vectors_dim'] = saved_vectors['dim']
    if found != sizes or bool(self.chars) != ('chars' in vocabs):
      raise CheckpointError(
        f'task.json: vocabulary sizes {found} do not match the model sizes {sizes} '
        '(or the config asks for character features the saved run has not).'
      )
    fingerprint = saved_vectors.get('fingerprint') if 'vectors_dim' in found else None
    return dataclasses.replace(
      task, vocabs=vocabs, vectors=None, vectors_fingerprint=fingerprint or ''
    )

  @property
  def time_keys(self) -> tuple[str, ...]:
    keys = ('inputs', 'chars') if self.chars else ('inputs',)
    keys += ('vectors',) if self.has_vectors else ()
    return keys + (('labels',) if self.per_step else ())

  @property
  def width_keys(self) -> tuple[str, ...]:
    return ('chars',) if self.chars else ()

  def example_widths(self, dataset: dict) -> np.ndarray:
    """int[n]: each sentence's longest word in characters (at most `max_word_len`); the
    character encoders ignore padding characters, so a narrower batch changes nothing."""
    if not self.chars:
      return super().example_widths(dataset)
    return (dataset['chars'] > 0).sum(-1).max(-1, initial=0)

  def example_batch(self, batch_size: int = 1, time: int = 1) -> dict:
    batch = {
      'inputs': np.zeros((batch_size, time), np.int32),
      'lengths': np.full((batch_size,), time, np.int32),
    }
    if self.chars:
      batch['chars'] = np.zeros((batch_size, time, 1), np.int32)
    if self.sizes.get('vectors_dim'):
      batch['vectors'] = np.zeros((batch_size, time, self.sizes['vectors_dim']), np.float16)
    return batch

  def export_axes(self) -> dict:
    axes = super().export_axes()
    if 'chars' in axes:
      axes['chars'] = ('batch', 'time', 'word')  # words of any length
    return axes

  def model_inputs(self, batch: dict) -> tuple:
    inputs = (batch['inputs'], batch['lengths'], batch['chars'] if self.chars else None)
    if self.has_vectors:
      return inputs + (batch['vectors'],)
    return inputs if self.chars else inputs[:2]

  def make_encoder(self) -> TextEncoder:
    """The text encoder from the typed model options and the fitted vocabularies (the
    tagger's and the classifier's shared body)."""
    return TextEncoder.from_config(
      self.model,
      vocab_size=self.sizes['vocab_size'],
      char_vocab_size=self.sizes.get('char_vocab_size', 0),
      char_encoder=self.chars or 'cnn',
      vectors_dim=self.sizes.get('vectors_dim', 0),
    )

  def label_names(self) -> list[str]:
    return list(self.vocabs['labels'].tokens)
