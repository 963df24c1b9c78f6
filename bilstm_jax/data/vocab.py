"""Token vocabularies and padding of id sequences into arrays.

A `Vocabulary` maps strings to ids: the reserved tokens first (padding at id 0, then the
unknown token), then the training tokens by count (highest first), ties by the token
itself, so building twice from the same data gives the same ids. Word and character
vocabularies are separate instances: lowercasing (`lowercase=True`) is for words, while
a character vocabulary keeps case.

A workdir saves its vocabularies with `to_spec` (each one's `to_json` and `fingerprint()`)
and `from_spec` checks them on load, so a model is never run with ids from a different
vocabulary. `encode_sentences` turns tokenised sentences into the padded word (and
character) id arrays the text models take.
"""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Iterable, Sequence

import numpy as np

from bilstm_jax.errors import CheckpointError

PAD = '<pad>'
UNK = '<unk>'
_FORMAT = 'bilstm_jax.Vocabulary/1'


class Vocabulary:
  """A string <-> id mapping built from training data.

  Attributes:
    tokens: the token of each id (reserved tokens included).
    counts: training count of each token (0 for reserved tokens).
    lowercase: whether tokens are lowercased before lookup.
    pad_token: token at id 0, or None (e.g. for a tag vocabulary).
    unk_token: token that unknown inputs map to, or None (then `encode` raises KeyError).

  Example:
    >>> words = Vocabulary.build([['The', 'cat'], ['the', 'dog']], lowercase=True)
    >>> words.tokens
    ['<pad>', '<unk>', 'the', 'cat', 'dog']
    >>> words.encode(['THE', 'bird'])
    [2, 1]
    >>> chars = Vocabulary.build(''.join(s) for s in [['The', 'cat']])  # per character
  """

  def __init__(
    self,
    tokens: Sequence[str],
    counts: Sequence[int] | None = None,
    lowercase: bool = False,
    pad_token: str | None = PAD,
    unk_token: str | None = UNK,
  ):
    """Wraps an id-ordered token list; `build` is the usual way in.

    Raises:
      ValueError: if tokens repeat or the reserved tokens are not first, in order.
    """
    self.tokens = list(tokens)
    self.counts = [0] * len(self.tokens) if counts is None else [int(c) for c in counts]
    self.lowercase = bool(lowercase)
    self.pad_token, self.unk_token = pad_token, unk_token
    reserved = [t for t in (pad_token, unk_token) if t is not None]
    if self.tokens[: len(reserved)] != reserved:
      raise ValueError(f'Vocabulary must start with {reserved}; got {self.tokens[:2]}.')
    if len(self.counts) != len(self.tokens):
      raise ValueError(f'{len(self.tokens)} tokens but {len(self.counts)} counts.')
    self._ids = {t: i for i, t in enumerate(self.tokens)}
    if len(self._ids) != len(self.tokens):
      dup = [t for t, c in collections.Counter(self.tokens).items() if c > 1]
      raise ValueError(f'Vocabulary tokens repeat: {dup[:5]}.')

  @classmethod
  def build(
    cls,
    sequences: Iterable[Iterable[str]],
    min_count: int = 1,
    max_size: int | None = None,
    lowercase: bool = False,
    pad_token: str | None = PAD,
    unk_token: str | None = UNK,
  ) -> Vocabulary:
    """Builds a vocabulary from training sequences (of words, or of characters: strings).

    Args:
      sequences: token sequences of the training split only, so that dev and test words
        are unknown to the model as they would be in use.
      min_count: tokens seen fewer times are left out (and map to `unk_token`).
      max_size: at most this many entries in all, reserved ones included (the size of the
        embedding table); the most frequent tokens are kept.
      lowercase: lowercase tokens (counting and lookup); for word vocabularies.
      pad_token: the reserved token at id 0 (None leaves it out; later ids move up).
      unk_token: the reserved token for unknown words, at id 1 (0 without `pad_token`;
        None leaves it out).

    Returns:
      A `Vocabulary`.
    """
    counter = collections.Counter()
    for seq in sequences:
      counter.update(t.lower() if lowercase else t for t in seq)
    reserved = [t for t in (pad_token, unk_token) if t is not None]
    for t in reserved:
      counter.pop(t, None)  # a literal '<pad>' in the data must not get a second id
    kept = sorted(
      ((t, c) for t, c in counter.items() if c >= min_count), key=lambda tc: (-tc[1], tc[0])
    )
    if max_size is not None:
      if max_size < len(reserved):
        raise ValueError(f'max_size {max_size} leaves no room for the reserved {reserved}.')
      kept = kept[: max_size - len(reserved)]
    return cls(
      reserved + [t for t, _ in kept],
      [0] * len(reserved) + [c for _, c in kept],
      lowercase,
      pad_token,
      unk_token,
    )

  def __len__(self) -> int:
    return len(self.tokens)

  def __contains__(self, token: str) -> bool:
    return self._normalise(token) in self._ids

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Vocabulary) and self.to_json() == other.to_json()

  def __repr__(self) -> str:
    return f'Vocabulary({len(self)} tokens, lowercase={self.lowercase})'

  def _normalise(self, token: str) -> str:
    return token.lower() if self.lowercase else token

  @property
  def pad_id(self) -> int | None:
    """The padding id (0), or None without a padding token."""
    return None if self.pad_token is None else 0

  @property
  def unk_id(self) -> int | None:
    """The id unknown tokens map to, or None without an unknown token."""
    return None if self.unk_token is None else self._ids[self.unk_token]

  def encode(self, tokens: Iterable[str]) -> list[int]:
    """Ids of tokens; unknown ones get `unk_id`.

    Raises:
      KeyError: for an unknown token when the vocabulary has no unknown token.
    """
    unk = self.unk_id
    if unk is None:
      return [self._ids[self._normalise(t)] for t in tokens]
    return [self._ids.get(self._normalise(t), unk) for t in tokens]

  def decode(self, ids: Iterable[int]) -> list[str]:
    """Tokens of ids (lowercased ones as stored)."""
    return [self.tokens[int(i)] for i in ids]

  def to_json(self) -> str:
    """The vocabulary as a JSON string; the same vocabulary always gives the same string."""
    return json.dumps(
      {
        'format': _FORMAT,
        'lowercase': self.lowercase,
        'pad_token': self.pad_token,
        'unk_token': self.unk_token,
        'tokens': self.tokens,
        'counts': self.counts,
      },
      ensure_ascii=False,
      sort_keys=True,
    )

  @classmethod
  def from_json(cls, text: str) -> Vocabulary:
    """Inverse of `to_json`.

    Raises:
      ValueError: if the text is not a vocabulary written by `to_json`.
    """
    try:
      d = json.loads(text)
      if d.get('format') != _FORMAT:
        raise ValueError(f'format {d.get("format")!r}, expected {_FORMAT!r}')
      return cls(d['tokens'], d['counts'], d['lowercase'], d['pad_token'], d['unk_token'])
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as e:
      raise ValueError(f'Not a saved Vocabulary: {e}') from e

  def fingerprint(self) -> str:
    """sha256 of what decides the ids (tokens in order, lowercasing, reserved tokens).

    Counts are left out: two vocabularies with equal ids are interchangeable for a model.
    """
    key = json.dumps(
      [self.tokens, self.lowercase, self.pad_token, self.unk_token], ensure_ascii=False
    )
    return hashlib.sha256(key.encode('utf-8')).hexdigest()


def pad_ids(
  sequences: Sequence[Sequence[int]], time: int | None = None, pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """Pads id lists into one array.

  Args:
    sequences: n id lists.
    time: the time axis; None takes the longest sequence. Longer sequences are cut.
    pad_id: the value after each sequence's end.

  Returns:
    (ids int32[n, time], lengths int32[n]); lengths are after any cut.
  """
  lengths = np.array([len(s) for s in sequences], np.int32)
  time = int(lengths.max(initial=0)) if time is None else time
  lengths = np.minimum(lengths, time)
  ids = np.full((len(sequences), time), pad_id, np.int32)
  for i, s in enumerate(sequences):
    ids[i, : lengths[i]] = s[: lengths[i]]
  return ids, lengths


def pad_chars(
  words: Sequence[Sequence[Sequence[int]]],
  max_word_len: int,
  time: int | None = None,
  pad_id: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
  """Pads sentences of words of character ids into one array.

  The caller picks `max_word_len` per batch (e.g. the longest word in it, capped), so one
  long URL in the corpus does not widen every batch.

  Args:
    words: n sentences, each a list of words, each a list of character ids.
    max_word_len: characters kept per word; longer words are cut.
    time: words per sentence; None takes the longest sentence.
    pad_id: the fill value.

  Returns:
    (chars int32[n, time, max_word_len], word_lengths int32[n, time]), word_lengths 0 at
    padded word positions.
  """
  n = len(words)
  time = max((len(s) for s in words), default=0) if time is None else time
  chars = np.full((n, time, max_word_len), pad_id, np.int32)
  word_lengths = np.zeros((n, time), np.int32)
  for i, sentence in enumerate(words):
    for j, word in enumerate(sentence[:time]):
      k = min(len(word), max_word_len)
      chars[i, j, :k] = word[:k]
      word_lengths[i, j] = k
  return chars, word_lengths


def encode_sentences(
  sentences: list[list[str]], words: Vocabulary, chars: Vocabulary | None, width: int
) -> dict:
  """{'inputs' int32[n, t], 'lengths' int32[n]} of tokenised sentences, with 'chars'
  int32[n, t, w] when `chars` is given; w is the longest word, capped at `width`."""
  ids, lengths = pad_ids([words.encode(s) for s in sentences])
  out = {'inputs': ids, 'lengths': lengths}
  if chars is not None:
    longest = max((len(w) for s in sentences for w in s), default=1)
    encoded = [[chars.encode(w) for w in s] for s in sentences]
    out['chars'], _ = pad_chars(encoded, max(1, min(longest, width)), ids.shape[1])
  return out


def to_spec(vocabs: dict[str, Vocabulary]) -> dict:
  """The JSON-able record of named vocabularies that `from_spec` reads back."""
  return {
    'vocabularies': {k: v.to_json() for k, v in vocabs.items()},
    'fingerprints': {k: v.fingerprint() for k, v in vocabs.items()},
  }


def from_spec(spec: dict, need: tuple[str, ...]) -> dict[str, Vocabulary]:
  """The vocabularies of a `to_spec` record (a workdir's task.json).

  Raises:
    CheckpointError: one of `need` is missing, unreadable, or does not match its
      fingerprint.
  """
  saved = spec.get('vocabularies')
  if not isinstance(saved, dict) or not set(need) <= set(saved):
    found = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
    raise CheckpointError(
      f'task.json holds no readable vocabularies (need {list(need)}; found {found}).'
    )
  try:
    vocabs = {k: Vocabulary.from_json(v) for k, v in saved.items()}
  except ValueError as e:
    raise CheckpointError(f'task.json holds no readable vocabularies ({e}).') from e
  fingerprints = spec.get('fingerprints')
  fingerprints = fingerprints if isinstance(fingerprints, dict) else {}
  for k, v in vocabs.items():
    if v.fingerprint() != fingerprints.get(k):
      raise CheckpointError(
        f'task.json: the {k} vocabulary does not match its fingerprint, so it is not the one '
        'the checkpoints were trained with.'
      )
  return vocabs
