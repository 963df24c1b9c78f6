"""A task of your own: split unsegmented text into words, one tag per character.

'thecatsatonthemat' -> ['the', 'cat', 'sat', 'on', 'the', 'mat']: the BiLSTM tags each
character 1 where a word starts, else 0. The data is generated from `WORDS`: sentences of
1 to `data.seq_len` words, written without their spaces. A .txt file works as well (one
text per line; spaces, where there are any, mark the words).

Nothing in `bilstm_jax` knows this file. A config names the class by its path:

  python train.py --config configs/default.py --workdir runs/seg \
      --config.data.task=examples/char_segmenter.py:CharSegmenter
  python train.py --config examples/char_segmenter_config.py --workdir runs/seg
  python train.py --workdir runs/seg --mode=predict --input=texts.txt --output=p.jsonl

The last writes each line's words (`records`), as `bilstm_jax.load('runs/seg').predict` does.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from bilstm_jax.errors import ConfigError, DataFileError
from bilstm_jax.models import BiLSTMTagger
from bilstm_jax.tasks import StepLabels, Task

WORDS = (  # the generated sentences' words, space-separated
  'a an and are as at be big but by can cat day dog eat for fox from had has her his hot '
  'in is it let man map mat new not now of old on one our out ran red run sat see she '
  'sun the this to top two up was way we who yes you'
)
ALPHABET = 'abcdefghijklmnopqrstuvwxyz'  # ids 1..26; 0 pads, and stands for any other char
SEEDS = {'train': 0, 'dev': 1, 'test': 2}  # a generated split: (data.seed, its own seed)


def generate(num: int, max_words: int, seed) -> list[str]:
  """`num` sentences of 1 to `max_words` random `WORDS`, with their spaces."""
  rng = np.random.default_rng(seed)
  words = WORDS.split()
  return [' '.join(rng.choice(words, rng.integers(1, max_words + 1))) for _ in range(num)]


def encode(lines: list[str]) -> dict:
  """Texts -> a tagging dataset: the characters without spaces, each labelled 1 where a
  word starts.

  Returns:
    {'inputs': int32[n, time] character ids, 'labels': int32[n, time],
     'lengths': int32[n] characters per text}.
  """
  words = [line.lower().split() for line in lines]
  lengths = np.array([sum(map(len, w)) for w in words], np.int32)
  inputs = np.zeros((len(lines), max(int(lengths.max(initial=0)), 1)), np.int32)
  labels = np.zeros_like(inputs)
  for i, line in enumerate(words):
    j = 0
    for word in line:
      inputs[i, j : j + len(word)] = [ALPHABET.find(c) + 1 for c in word]
      labels[i, j] = 1
      j += len(word)
  return {'inputs': inputs, 'labels': labels, 'lengths': lengths}


def split_words(ids: np.ndarray, starts: np.ndarray) -> list[str]:
  """One text's character ids and word-start tags (its real steps) -> its words."""
  words: list[str] = []
  for i, start in zip(ids, starts, strict=True):
    char = ALPHABET[i - 1] if i > 0 else '?'
    if start or not words:
      words.append(char)
    else:
      words[-1] += char
  return words


@dataclasses.dataclass(frozen=True)
class CharSegmenter(Task):
  """Word starts per character: a data source of its own plus the shipped per-step
  labels objective (`StepLabels`: loss, accuracy, ensemble mean, predicted labels).

  Attributes:
    num: {split: examples generated} where the config names no file for the split.
    max_words: the most words a generated sentence has (`data.seq_len`).
    seed: the data seed (`data.seed`); each split adds its own (`SEEDS`).
  """

  name: ClassVar[str] = 'char_segmenter'  # in task.json: a workdir of another task is refused
  objective: ClassVar[StepLabels] = StepLabels()  # what is learned: one label per step

  num: dict = dataclasses.field(default_factory=dict)
  max_words: int = 6
  seed: int = 0

  @classmethod
  def validate_config(cls, config) -> None:
    """Optional hook: the shared checks, then this task's own keys."""
    super().validate_config(config)
    for split in ('train', 'dev'):
      path = config.data.get(split) or ''
      if path and not path.endswith('.txt'):
        raise ConfigError(f'config.data.{split}={path!r}: {cls.name} reads .txt files.')

  @classmethod
  def from_config(cls, config) -> CharSegmenter:
    """Required: the task from a run config (the base reads data files and `model`)."""
    d = config.data
    files = {'train': d.train, 'dev': d.dev, 'test': d.get('test_file', '')}  # '': generated
    num = {'train': d.get('num_train') or 512, 'dev': d.num_dev, 'test': d.num_dev}
    task = super().from_config(config)  # the model block
    return dataclasses.replace(
      task, sources=files, num=num, max_words=d.seq_len, seed=d.get('seed', 0)
    )

  def read(self, source: str, labelled: bool = True) -> dict:
    """Required: a split (generated, or its .txt file) or a .txt path -> a dataset."""
    path = self.sources.get(source) if source in SEEDS else source
    if path:
      try:
        with open(path, encoding='utf-8') as f:
          lines = f.read().splitlines()
      except (OSError, UnicodeDecodeError) as e:
        raise DataFileError(f'{path}: cannot read the texts ({e}).') from None
    else:
      lines = generate(self.num[source], self.max_words, (self.seed, SEEDS[source]))
    dataset = encode(lines)
    self.check(dataset, path or source)
    return dataset

  def fit(self, source: str = 'train') -> CharSegmenter:
    """Optional: the sizes the model is built with, fixed here (by default they are taken
    from the arrays `read(source)` gives)."""
    return dataclasses.replace(self, sizes={'vocab_size': len(ALPHABET) + 1, 'num_classes': 2})

  def make_model(self) -> BiLSTMTagger:
    """Required: the model from the config's `model` block and the fitted sizes."""
    return BiLSTMTagger.from_config(self.model, **self.sizes)

  def records(self, dataset: dict, predictions: dict, source) -> list[dict]:
    """Optional: the task's own terms, each text with the words the model found."""
    return [
      {'text': ''.join(ALPHABET[i - 1] if i else '?' for i in ids[:n]),
       'words': split_words(ids[:n], starts[:n])}
      for ids, starts, n in zip(
        dataset['inputs'], predictions['labels'], dataset['lengths'], strict=True)
    ]  # fmt: skip
