"""Entity tagging schemes (IOB1, IOB2/BIO, BIOES), span extraction and span F1.

A tag is `O` or `P-TYPE` with prefix P in B, I, E, S (the type may itself hold dashes, as
WNUT-17's `B-creative-work`). Spans are `(type, start, end)` with `end` exclusive.

Span extraction follows conlleval (the CoNLL shared tasks' scorer, and `seqeval`'s default
mode): a token with a type starts a new entity when its prefix is B or S, or the previous
token is O, ends an entity (E or S), or has another type; otherwise it continues the
current entity. So a stray `I-X` after `O` or after another type starts an entity, and `B-X`
always starts one. The same rules read IOB1 (where `B-` appears only where an entity
directly follows another of the same type), IOB2 and BIOES correctly, so `spans` takes no
scheme argument; conversion goes through spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

SCHEMES = ('IOB1', 'IOB2', 'BIO', 'BIOES')

Span = tuple[str, int, int]


def _parse(tag: str) -> tuple[str, str]:
  if tag == 'O':
    return 'O', ''
  prefix, sep, kind = tag.partition('-')
  if not sep or not kind or prefix not in ('B', 'I', 'E', 'S'):
    raise ValueError(f'Tag {tag!r} is neither O nor B-, I-, E- or S- followed by a type.')
  return prefix, kind


def spans(tags: Sequence[str]) -> list[Span]:
  """The entities of one tag sequence, with conlleval's rules (see the module docstring).

  Example:
    >>> spans(['B-PER', 'I-PER', 'O', 'I-LOC', 'B-LOC'])
    [('PER', 0, 2), ('LOC', 3, 4), ('LOC', 4, 5)]

  Raises:
    ValueError: for a tag that is not O or P-TYPE.
  """
  found = []
  prev, prev_kind, begin = 'O', '', 0
  for i, tag in enumerate(tags):
    prefix, kind = _parse(tag)
    starts = prefix != 'O' and (
      prefix in ('B', 'S') or prev in ('O', 'E', 'S') or prev_kind != kind
    )
    if prev != 'O' and (starts or prefix == 'O'):
      found.append((prev_kind, begin, i))
    if starts:
      begin = i
    prev, prev_kind = prefix, kind
  if prev != 'O':
    found.append((prev_kind, begin, len(tags)))
  return found


def from_spans(entities: Sequence[Span], length: int, scheme: str) -> list[str]:
  """Writes non-overlapping spans as tags of `length` tokens in a scheme.

  Args:
    entities: `(type, start, end)` spans, end exclusive, in any order.
    length: number of tokens.
    scheme: 'IOB1', 'IOB2' (= 'BIO') or 'BIOES'.

  Raises:
    ValueError: for an unknown scheme, or spans that overlap or fall outside the tokens.
  """
  if scheme not in SCHEMES:
    raise ValueError(f'Unknown tagging scheme {scheme!r}; expected one of {SCHEMES}.')
  tags = ['O'] * length
  last_end, last_kind = -1, None
  for kind, start, end in sorted(entities, key=lambda s: s[1]):
    if not 0 <= start < end <= length or start < last_end:
      raise ValueError(f'Span {(kind, start, end)} overlaps another or is outside 0..{length}.')
    for i in range(start, end):
      tags[i] = f'I-{kind}'
    # IOB1 marks a start with B- only where the previous entity (same type) ends right here.
    follows_same = start == last_end and kind == last_kind
    if scheme in ('IOB2', 'BIO') or (scheme == 'IOB1' and follows_same):
      tags[start] = f'B-{kind}'
    elif scheme == 'BIOES':
      if end - start == 1:
        tags[start] = f'S-{kind}'
      else:
        tags[start], tags[end - 1] = f'B-{kind}', f'E-{kind}'
    last_end, last_kind = end, kind
  return tags


def convert(tags: Sequence[str], scheme: str) -> list[str]:
  """Rewrites a tag sequence (any scheme) in `scheme`, keeping its conlleval spans.

  Example:
    >>> convert(['I-PER', 'I-PER', 'B-PER', 'O'], 'BIOES')  # IOB1 in
    ['B-PER', 'E-PER', 'S-PER', 'O']
  """
  return from_spans(spans(tags), len(tags), scheme)


class TypeCounts(NamedTuple):
  """Entity counts of one type (or all): gold, predicted and correct (exact span and type)."""

  gold: int
  predicted: int
  correct: int

  @property
  def precision(self) -> float:
    """correct / predicted; 0 when nothing was predicted."""
    return self.correct / self.predicted if self.predicted else 0.0

  @property
  def recall(self) -> float:
    """correct / gold; 0 when there is no gold entity."""
    return self.correct / self.gold if self.gold else 0.0

  @property
  def f1(self) -> float:
    """The harmonic mean of precision and recall; 0 when both are 0."""
    p, r = self.precision, self.recall
    return 2 * p * r / (p + r) if p + r else 0.0


class SpanScores(NamedTuple):
  """Corpus-level entity scores.

  Attributes:
    total: micro-averaged counts over all types; `total.precision`, `.recall` and `.f1` are
      the conlleval numbers (0 where undefined, as `seqeval` reports them).
    per_type: counts of each type seen in gold or predictions.
  """

  total: TypeCounts
  per_type: dict[str, TypeCounts]

  @property
  def precision(self) -> float:
    """Micro-averaged precision over all types (`total.precision`)."""
    return self.total.precision

  @property
  def recall(self) -> float:
    """Micro-averaged recall over all types (`total.recall`)."""
    return self.total.recall

  @property
  def f1(self) -> float:
    """Micro-averaged F1 over all types (`total.f1`), as conlleval reports it."""
    return self.total.f1


def span_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> SpanScores:
  """Entity precision, recall and F1 over a corpus: a prediction counts if span and type match.

  Args:
    gold: gold tag sequences, one per sentence.
    predicted: predicted tag sequences, the same lengths.

  Returns:
    `SpanScores` with micro totals and per-type counts.

  Raises:
    ValueError: if the corpora differ in sentence count or a sentence in length.
  """
  if len(gold) != len(predicted):
    raise ValueError(f'{len(gold)} gold sentences but {len(predicted)} predicted ones.')
  counts: dict[str, list[int]] = {}
  for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
    if len(g) != len(p):
      raise ValueError(f'Sentence {i}: {len(g)} gold tags but {len(p)} predicted ones.')
    g_spans, p_spans = set(spans(g)), set(spans(p))
    for field, group in enumerate((g_spans, p_spans, g_spans & p_spans)):
      for kind, _, _ in group:
        counts.setdefault(kind, [0, 0, 0])[field] += 1
  per_type = {k: TypeCounts(*v) for k, v in sorted(counts.items())}
  total = TypeCounts(*(sum(c[f] for c in per_type.values()) for f in range(3)))
  return SpanScores(total, per_type)
