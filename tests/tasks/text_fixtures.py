"""Generated text corpora for the text tasks: CoNLL-U, CoNLL-2003-style columns, TSV.

Nothing is sampled from a real corpus: words come from small made-up lists, and each
file's labels follow simple rules a BiLSTM learns in a few epochs (some need context).
"""

from __future__ import annotations

import os

import numpy as np

DET = ['the', 'a', 'this']
ADJ = ['big', 'red', 'old', 'quick']
NOUN = ['cat', 'dog', 'plan', 'house', 'tree']
VERB = ['sees', 'likes', 'moves', 'finds']
# 'walk' and 'fish' are NOUN after a determiner and VERB after a noun: context decides.
BOTH = ['walk', 'fish']
PER = ['Alice', 'Bob', 'Carol', 'Dmitri']
LOC = ['Paris', 'Oslo', 'Lima', 'New', 'York']


def _pos_sentence(rng) -> list[tuple[str, str]]:
  words = []
  for _ in range(rng.integers(1, 3)):
    words.append((str(rng.choice(DET)), 'DET'))
    if rng.random() < 0.5:
      words.append((str(rng.choice(ADJ)), 'ADJ'))
    noun = rng.choice(NOUN + BOTH)
    words.append((str(noun).capitalize() if rng.random() < 0.2 else str(noun), 'NOUN'))
    words.append((str(rng.choice(VERB + BOTH)), 'VERB'))
  words.append(('.', 'PUNCT'))
  return words


def write_conllu(path: str, num: int, seed: int) -> str:
  """A CoNLL-U file of `num` sentences, with comments and a multiword token to skip."""
  rng = np.random.default_rng(seed)
  lines = []
  for i in range(num):
    words = _pos_sentence(rng)
    lines.append(f'# sent_id = gen-{seed}-{i}')
    lines.append('# text = ' + ' '.join(w for w, _ in words))
    if i % 7 == 0:
      lines.append(f'1-2\t{words[0][0]}{words[1][0]}\t_\t_\t_\t_\t_\t_\t_\t_')
    for j, (w, t) in enumerate(words, 1):
      lines.append(f'{j}\t{w}\t{w.lower()}\t{t}\tX{t}\t_\t{max(j - 1, 0)}\tdep\t_\t_')
    lines.append('')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def ner_sentence(rng) -> tuple[list[str], list[str]]:
  """Tokens and IOB1 tags: PER names after 'met', LOC names after 'in' (one or two words);
  'New York' is one LOC; two adjacent PER names are two entities (IOB1 writes B-)."""
  tokens, tags = [], []
  for _ in range(rng.integers(1, 4)):
    kind = rng.integers(3)
    if kind == 0:
      tokens += ['we', 'met']
      tags += ['O', 'O']
      tokens.append(str(rng.choice(PER)))
      tags.append('I-PER')
      if rng.random() < 0.3:
        tokens.append(str(rng.choice(PER)))
        tags.append('B-PER')
    elif kind == 1:
      tokens += ['they', 'live', 'in']
      tags += ['O', 'O', 'O']
      if rng.random() < 0.4:
        tokens += ['New', 'York']
        tags += ['I-LOC', 'I-LOC']
      else:
        tokens.append(str(rng.choice(LOC[:3])))
        tags.append('I-LOC')
    else:
      tokens += ['it', 'is', str(rng.choice(ADJ))]
      tags += ['O', 'O', 'O']
  return tokens, tags


def write_conll(path: str, num: int, seed: int, docstart: bool = True) -> str:
  """A CoNLL-2003-style file (`word POS chunk NER`, IOB1, -DOCSTART- lines)."""
  rng = np.random.default_rng(seed)
  lines = ['-DOCSTART- -X- -X- O', ''] if docstart else []
  for _ in range(num):
    tokens, tags = ner_sentence(rng)
    lines += [f'{w} NN I-NP {t}' for w, t in zip(tokens, tags, strict=True)] + ['']
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  return path


GOOD = ['good', 'great', 'fine', 'lovely']
BAD = ['bad', 'awful', 'dull', 'poor']
FILL = ['the', 'movie', 'was', 'and', 'plot', 'acting', 'very']


def write_tsv(path: str, num: int, seed: int) -> str:
  """GLUE-style `sentence<TAB>label` with a header: label 1 if good words outnumber bad,
  a 'not' before a word flips it."""
  rng = np.random.default_rng(seed)
  rows = ['sentence\tlabel']
  while len(rows) <= num:
    words, score = [], 0
    for _ in range(rng.integers(3, 9)):
      r = rng.random()
      if r < 0.4:
        neg = rng.random() < 0.2
        good = rng.random() < 0.5
        words += (['not'] if neg else []) + [str(rng.choice(GOOD if good else BAD))]
        score += (1 if good else -1) * (-1 if neg else 1)
      else:
        words.append(str(rng.choice(FILL)))
    if score == 0:
      continue
    rows.append(' '.join(words) + ' \t' + str(int(score > 0)))
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(rows) + '\n')
  return path


def write_all(directory: str) -> dict:
  """Train and dev files of each format in `directory`: {name: path}."""
  j = lambda name: os.path.join(directory, name)  # noqa: E731
  return {
    'pos_train': write_conllu(j('train.conllu'), 240, 0),
    'pos_dev': write_conllu(j('dev.conllu'), 60, 1),
    'ner_train': write_conll(j('train.conll'), 240, 2),
    'ner_dev': write_conll(j('dev.conll'), 60, 3),
    'cls_train': write_tsv(j('train.tsv'), 400, 4),
    'cls_dev': write_tsv(j('dev.tsv'), 100, 5),
  }
