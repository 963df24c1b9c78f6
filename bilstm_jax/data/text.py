"""Readers for text corpora: tagged sentences, labelled sentences, raw sentences.

Every reader returns plain Python lists (no arrays: vocabularies are built later) and
raises `DataFileError` with `path:line: what is wrong` for a missing, empty, undecodable
(files are UTF-8; a leading byte-order mark is ignored) or malformed file.

Formats:
  * CoNLL-U (Universal Dependencies), `read_conllu`: 10 tab-separated columns per word.
    The parser is our own, not the `conllu` PyPI package: tagging needs 3 columns (ID,
    FORM and UPOS or XPOS), while `conllu` parses every column (features, heads,
    enhanced dependencies) into dicts and token objects, which costs time and memory on
    a 200k-word treebank, and reports errors as its own exceptions without our
    `file:line` form. Checking the column count and the ID sequence is a few lines.
  * CoNLL column files (CoNLL-2003, WNUT-17), `read_conll`: whitespace-separated columns,
    one token per line, blank line between sentences, `-DOCSTART-` lines skipped.
  * GLUE-style TSV (SST-2), `read_tsv`: `sentence<TAB>label`, optional header.
  * Raw text, `read_raw`: one whitespace-tokenised sentence per line, for prediction.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

from bilstm_jax.errors import DataFileError


class TaggedSentence(NamedTuple):
  """A sentence with one tag per token."""

  tokens: list[str]
  tags: list[str]


class LabelledSentence(NamedTuple):
  """A sentence with one label for the whole of it; the label is kept as a string."""

  text: str
  label: str


def _lines(path: str) -> Iterator[tuple[int, str]]:
  """Yields (1-based line number, line without its line break), decoding UTF-8 line by line.

  Decoding per line, not per file, lets an error name the line holding the bad bytes.
  """
  if not os.path.exists(path):
    raise DataFileError(f'{path}: no such file.')
  try:
    with open(path, 'rb') as f:
      for lineno, raw in enumerate(f, 1):
        try:
          line = raw.decode('utf-8')
        except UnicodeDecodeError as e:
          raise DataFileError(
            f'{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start} of the line).'
          ) from e
        if lineno == 1:
          line = line.removeprefix('\ufeff')
        yield lineno, line.rstrip('\r\n')
  except OSError as e:
    raise DataFileError(f'{path}: cannot be read: {e.strerror or e}.') from e


def _nonempty(path: str, items: list, what: str) -> list:
  if not items:
    raise DataFileError(f'{path}: holds no {what}.')
  return items


def read_conllu(path: str, tag_column: str = 'upos') -> list[TaggedSentence]:
  """Reads a CoNLL-U treebank as (words, part-of-speech tags).

  Only syntactic words are kept: multiword-token ranges (`3-4`) and empty nodes (`5.1`)
  are skipped, `#` comment lines too. A blank line ends a sentence.

  Args:
    path: a `.conllu` file.
    tag_column: 'upos' (column 4, universal tags) or 'xpos' (column 5, e.g. PTB tags).

  Returns:
    One `TaggedSentence` per sentence, in file order.

  Raises:
    DataFileError: `path:line` for a line without 10 tab-separated columns, an ID that is
      not an integer, range or decimal, or word IDs that do not count 1, 2, 3, ...
  """
  columns = {'upos': 3, 'xpos': 4}
  if tag_column not in columns:
    raise ValueError(f'tag_column must be one of {sorted(columns)}; got {tag_column!r}.')
  col = columns[tag_column]
  sentences, tokens, tags = [], [], []
  for lineno, line in _lines(path):
    if not line.strip():
      if tokens:
        sentences.append(TaggedSentence(tokens, tags))
      tokens, tags = [], []
      continue
    if line.startswith('#'):
      continue
    fields = line.split('\t')
    if len(fields) != 10:
      raise DataFileError(
        f'{path}:{lineno}: expected 10 tab-separated columns, found {len(fields)}.'
      )
    word_id = fields[0]
    if word_id.isdigit():
      if int(word_id) != len(tokens) + 1:
        raise DataFileError(
          f'{path}:{lineno}: word ID {word_id} where {len(tokens) + 1} was expected.'
        )
      tokens.append(fields[1])
      tags.append(fields[col])
      continue
    low, sep, high = word_id.partition('-') if '-' in word_id else word_id.partition('.')
    if not (sep and low.isdigit() and high.isdigit()):
      raise DataFileError(f'{path}:{lineno}: bad word ID {word_id!r}.')
  if tokens:
    sentences.append(TaggedSentence(tokens, tags))
  return _nonempty(path, sentences, 'sentences')


def read_conll(path: str, token_column: int = 0, tag_column: int = -1) -> list[TaggedSentence]:
  """Reads a CoNLL column file (one token per line, blank line between sentences).

  Columns are separated by any whitespace. `-DOCSTART-` lines (document boundaries in
  CoNLL-2003) are skipped. CoNLL-2003 (`word POS chunk NER`) is read with the defaults
  (token 0, tag -1 = NER), its chunk tags with `tag_column=2`; WNUT-17 (`word<TAB>tag`) with
  the defaults too.

  Args:
    path: the file.
    token_column: index of the token column.
    tag_column: index of the tag column; negative counts from the end.

  Returns:
    One `TaggedSentence` per sentence. Tags are returned as written (CoNLL-2003 is IOB1;
    see `bilstm_jax.data.tag_schemes` to convert).

  Raises:
    DataFileError: `path:line` for a line with fewer columns than the columns chosen, or a
      different number of columns from the first token line.
  """
  sentences, tokens, tags = [], [], []
  width = None
  for lineno, line in _lines(path):
    fields = line.split()
    if not fields:
      if tokens:
        sentences.append(TaggedSentence(tokens, tags))
      tokens, tags = [], []
      continue
    if fields[0] == '-DOCSTART-':
      continue
    width = width or len(fields)
    if len(fields) != width:
      raise DataFileError(
        f'{path}:{lineno}: {len(fields)} columns; the first token line has {width}.'
      )
    need = max(token_column, tag_column, -token_column - 1, -tag_column - 1) + 1
    if len(fields) < need:
      raise DataFileError(
        f'{path}:{lineno}: {len(fields)} columns; reading token column {token_column} '
        f'and tag column {tag_column} needs at least {need}.'
      )
    tokens.append(fields[token_column])
    tags.append(fields[tag_column])
  if tokens:
    sentences.append(TaggedSentence(tokens, tags))
  return _nonempty(path, sentences, 'sentences')


def read_tsv(path: str) -> list[LabelledSentence]:
  """Reads `sentence<TAB>label` lines (GLUE SST-2 layout), with or without a header.

  A first line `sentence<TAB>label` is taken as the header. Text is stripped of surrounding
  whitespace (GLUE puts a space before the tab); blank lines are skipped.

  Returns:
    One `LabelledSentence` per line, labels as strings ('0', '1', ...).

  Raises:
    DataFileError: `path:line` for a line without exactly one tab, or with an empty
      sentence or label.
  """
  examples = []
  for lineno, line in _lines(path):
    if not line.strip():
      continue
    fields = line.split('\t')
    if lineno == 1 and [f.strip() for f in fields] == ['sentence', 'label']:
      continue
    if len(fields) != 2:
      raise DataFileError(
        f'{path}:{lineno}: expected sentence<TAB>label, found {len(fields)} tab-separated fields.'
      )
    text, label = fields[0].strip(), fields[1].strip()
    if not text or not label:
      raise DataFileError(f'{path}:{lineno}: empty {"sentence" if not text else "label"}.')
    examples.append(LabelledSentence(text, label))
  return _nonempty(path, examples, 'examples')


def read_raw(path: str) -> list[list[str]]:
  """Reads one whitespace-tokenised sentence per line, e.g. text to tag.

  Every line is a sentence, a blank one too (as an empty token list), so that outputs line
  up with the input file line by line.

  Returns:
    A token list per line.

  Raises:
    DataFileError: for a missing, unreadable or empty file, or a line that is not UTF-8.
  """
  return _nonempty(path, [line.split() for _, line in _lines(path)], 'lines')
