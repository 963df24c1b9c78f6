"""Tagging schemes and span F1, against seqeval's default (conlleval) mode."""

import random
import warnings

import pytest

from bilstm_jax.data import tag_schemes as ts

seqeval_metrics = pytest.importorskip('seqeval.metrics')
seqeval_labeling = pytest.importorskip('seqeval.metrics.sequence_labeling')


def _seqeval_spans(tags):
  """seqeval's entities with our exclusive end."""
  return [(k, s, e + 1) for k, s, e in seqeval_labeling.get_entities(list(tags))]


def _seqeval_prf(gold, pred):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # seqeval warns where a score is 0/0 (it reports 0)
    return tuple(
      f(gold, pred)
      for f in (
        seqeval_metrics.precision_score,
        seqeval_metrics.recall_score,
        seqeval_metrics.f1_score,
      )
    )


HAND_MADE = [
  # IOB1 (CoNLL-2003): B- only where an entity follows one of the same type.
  (['I-PER', 'I-PER', 'B-PER', 'O', 'I-LOC'], [('PER', 0, 2), ('PER', 2, 3), ('LOC', 4, 5)]),
  # Stray I- after O and after another type start entities.
  (['O', 'I-ORG', 'I-ORG', 'I-LOC', 'O'], [('ORG', 1, 3), ('LOC', 3, 4)]),
  (['B-PER', 'I-LOC', 'I-LOC'], [('PER', 0, 1), ('LOC', 1, 3)]),
  # B- always starts one, so adjacent entities of one type stay apart.
  (['B-PER', 'B-PER', 'I-PER', 'B-PER'], [('PER', 0, 1), ('PER', 1, 3), ('PER', 3, 4)]),
  # BIOES, and dashes inside a type (WNUT-17).
  (
    ['S-X', 'B-X', 'I-X', 'E-X', 'E-X', 'I-X'],
    [('X', 0, 1), ('X', 1, 4), ('X', 4, 5), ('X', 5, 6)],
  ),
  (['B-creative-work', 'I-creative-work', 'O'], [('creative-work', 0, 2)]),
  ([], []),
  (['O', 'O'], []),
]


@pytest.mark.parametrize('tags, want', HAND_MADE)
def test_spans_hand_made(tags, want):
  assert ts.spans(tags) == want
  assert ts.spans(tags) == _seqeval_spans(tags)


def test_bad_tags():
  for tag in ('B', 'PER', 'X-PER', 'B-', 'b-PER'):
    with pytest.raises(ValueError, match='neither O nor'):
      ts.spans(['O', tag])


def _random_tags(rng, n, prefixes='BIO'):
  choices = ['O'] + [f'{p}-{t}' for p in prefixes if p != 'O' for t in ('PER', 'LOC', 'MISC')]
  return [rng.choice(choices) for _ in range(n)]


def test_spans_match_seqeval_on_random_sequences():
  rng = random.Random(0)
  for _ in range(200):
    tags = _random_tags(rng, rng.randint(0, 9), prefixes=rng.choice(['BIO', 'BIOES']))
    assert ts.spans(tags) == _seqeval_spans(tags), tags


def test_f1_matches_seqeval_hand_made():
  gold = [
    ['I-PER', 'I-PER', 'B-PER', 'O', 'I-LOC'],  # IOB1
    ['B-ORG', 'I-ORG', 'O', 'B-ORG'],
    ['O', 'O'],
  ]
  pred = [
    ['B-PER', 'I-PER', 'I-PER', 'O', 'I-LOC'],  # the two PERs merged: 1 of 3 right
    ['I-ORG', 'I-ORG', 'I-ORG', 'B-ORG'],  # stray I-: one long ORG, one right
    ['B-MISC', 'O'],
  ]
  got = ts.span_scores(gold, pred)
  assert got.total == ts.TypeCounts(gold=5, predicted=5, correct=2)
  assert got.per_type['PER'] == ts.TypeCounts(gold=2, predicted=1, correct=0)
  assert got.per_type['MISC'] == ts.TypeCounts(gold=0, predicted=1, correct=0)
  assert got.per_type['MISC'].f1 == 0.0
  assert (got.precision, got.recall, got.f1) == pytest.approx(_seqeval_prf(gold, pred))


def test_f1_matches_seqeval_on_random_corpora():
  rng = random.Random(1)
  for _ in range(20):
    lengths = [rng.randint(1, 8) for _ in range(10)]
    gold = [_random_tags(rng, n) for n in lengths]
    # Predictions close to gold, so that some entities match.
    pred = [[t if rng.random() < 0.7 else _random_tags(rng, 1)[0] for t in g] for g in gold]
    got = ts.span_scores(gold, pred)
    assert (got.precision, got.recall, got.f1) == pytest.approx(_seqeval_prf(gold, pred))


def test_f1_edge_cases():
  assert ts.span_scores([['O']], [['O']]).f1 == 0.0  # no entities at all, as seqeval
  assert ts.span_scores([['B-X']], [['B-X']]).f1 == 1.0
  with pytest.raises(ValueError, match='2 gold sentences but 1'):
    ts.span_scores([['O'], ['O']], [['O']])
  with pytest.raises(ValueError, match='Sentence 0: 1 gold tags but 2'):
    ts.span_scores([['O']], [['O', 'O']])


def test_conversions():
  iob1 = ['I-PER', 'I-PER', 'B-PER', 'O', 'I-LOC', 'I-LOC', 'I-PER']
  iob2 = ['B-PER', 'I-PER', 'B-PER', 'O', 'B-LOC', 'I-LOC', 'B-PER']
  bioes = ['B-PER', 'E-PER', 'S-PER', 'O', 'B-LOC', 'E-LOC', 'S-PER']
  for source in (iob1, iob2, bioes):
    assert ts.convert(source, 'IOB1') == iob1
    assert ts.convert(source, 'IOB2') == iob2
    assert ts.convert(source, 'BIO') == iob2
    assert ts.convert(source, 'BIOES') == bioes
  with pytest.raises(ValueError, match='scheme'):
    ts.convert(iob1, 'IOE2')
  with pytest.raises(ValueError, match='overlaps'):
    ts.from_spans([('X', 0, 2), ('Y', 1, 3)], 3, 'BIO')
  with pytest.raises(ValueError, match='outside'):
    ts.from_spans([('X', 2, 4)], 3, 'BIO')


def test_round_trips_on_random_sequences():
  rng = random.Random(2)
  schemes = ('IOB1', 'IOB2', 'BIOES')
  for _ in range(200):
    tags = _random_tags(rng, rng.randint(0, 9), prefixes=rng.choice(['BIO', 'BIOES']))
    entities = ts.spans(tags)
    written = {s: ts.convert(tags, s) for s in schemes}
    for s in schemes:
      assert ts.spans(written[s]) == entities  # conversion keeps the entities
      for t in schemes:
        assert ts.convert(written[s], t) == written[t]  # valid input round trips exactly
