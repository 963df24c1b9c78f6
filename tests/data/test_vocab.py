"""Vocabulary building, encoding, saving and padding."""

import numpy as np
import pytest

from bilstm_jax.data.vocab import Vocabulary, pad_chars, pad_ids

TRAIN = [['The', 'cat', 'sat'], ['the', 'dog', 'sat'], ['A', 'cat']]


def test_order_by_count_then_token():
  v = Vocabulary.build(TRAIN)
  # cat, sat twice; the rest once, sorted by token (uppercase sorts first).
  assert v.tokens == ['<pad>', '<unk>', 'cat', 'sat', 'A', 'The', 'dog', 'the']
  assert v.counts == [0, 0, 2, 2, 1, 1, 1, 1]
  assert (v.pad_id, v.unk_id) == (0, 1)
  assert Vocabulary.build(reversed(TRAIN)).tokens == v.tokens  # input order does not matter


def test_lowercase_min_count_max_size():
  v = Vocabulary.build(TRAIN, lowercase=True, min_count=2)
  assert v.tokens == ['<pad>', '<unk>', 'cat', 'sat', 'the']
  assert v.encode(['THE', 'Cat', 'dog']) == [4, 2, 1]
  assert 'CAT' in v and 'dog' not in v
  small = Vocabulary.build(TRAIN, lowercase=True, max_size=4)
  assert small.tokens == ['<pad>', '<unk>', 'cat', 'sat']  # 'the' ties, cut by token order
  with pytest.raises(ValueError, match='max_size 1'):
    Vocabulary.build(TRAIN, max_size=1)


def test_characters_keep_case():
  chars = Vocabulary.build(w for s in TRAIN for w in s)  # each word is a character sequence
  assert 'T' in chars and 't' in chars and chars.encode('Tt') != chars.encode('tt')
  assert chars.decode(chars.encode('cat')) == ['c', 'a', 't']


def test_encode_decode_and_unknowns():
  v = Vocabulary.build(TRAIN)
  ids = v.encode(['The', 'bird', 'sat'])
  assert ids == [5, 1, 3]
  assert v.decode(ids) == ['The', '<unk>', 'sat']
  assert v.decode(np.array(ids, np.int32)) == ['The', '<unk>', 'sat']
  tags = Vocabulary.build([['O', 'B-PER']], pad_token=None, unk_token=None)
  assert tags.tokens == ['B-PER', 'O'] and tags.pad_id is None
  with pytest.raises(KeyError):
    tags.encode(['I-PER'])
  # A reserved token appearing in the data gets no second id.
  assert Vocabulary.build([['<unk>', 'x']]).tokens == ['<pad>', '<unk>', 'x']


def test_json_round_trip_and_fingerprint():
  v = Vocabulary.build(TRAIN, lowercase=True)
  text = v.to_json()
  back = Vocabulary.from_json(text)
  assert back == v and back.to_json() == text
  assert (back.tokens, back.counts, back.lowercase) == (v.tokens, v.counts, v.lowercase)
  assert back.fingerprint() == v.fingerprint()
  assert len(v.fingerprint()) == 64
  # Another vocabulary (other ids, or other lowercasing) has another fingerprint.
  assert Vocabulary.build(TRAIN).fingerprint() != v.fingerprint()
  assert Vocabulary.build(TRAIN[:2], lowercase=True).fingerprint() != v.fingerprint()
  unicode = Vocabulary.build([['café', '東京']])
  assert Vocabulary.from_json(unicode.to_json()) == unicode


@pytest.mark.parametrize(
  'text', ['not json', '{"format": "other"}', '[]', '{"format": "bilstm_jax.Vocabulary/1"}']
)
def test_from_json_rejects_other_text(text):
  with pytest.raises(ValueError, match='Not a saved Vocabulary'):
    Vocabulary.from_json(text)


def test_constructor_checks():
  with pytest.raises(ValueError, match='must start with'):
    Vocabulary(['a', '<pad>', '<unk>'])
  with pytest.raises(ValueError, match='repeat'):
    Vocabulary(['<pad>', '<unk>', 'a', 'a'])


def test_pad_ids():
  ids, lengths = pad_ids([[3, 4, 5], [], [6]])
  np.testing.assert_array_equal(ids, [[3, 4, 5], [0, 0, 0], [6, 0, 0]])
  np.testing.assert_array_equal(lengths, [3, 0, 1])
  assert ids.dtype == np.int32 and lengths.dtype == np.int32
  ids, lengths = pad_ids([[3, 4, 5], [6]], time=2, pad_id=9)
  np.testing.assert_array_equal(ids, [[3, 4], [6, 9]])
  np.testing.assert_array_equal(lengths, [2, 1])
  assert pad_ids([])[0].shape == (0, 0)


def test_pad_chars():
  words = [[[1, 2, 3, 4, 5], [6]], [[7, 8]]]
  chars, word_lengths = pad_chars(words, max_word_len=3)
  assert chars.shape == (2, 2, 3) and chars.dtype == np.int32
  np.testing.assert_array_equal(chars[0], [[1, 2, 3], [6, 0, 0]])  # the long word is cut
  np.testing.assert_array_equal(chars[1], [[7, 8, 0], [0, 0, 0]])
  np.testing.assert_array_equal(word_lengths, [[3, 1], [2, 0]])
  chars, word_lengths = pad_chars(words, max_word_len=2, time=3)
  assert chars.shape == (2, 3, 2) and word_lengths.dtype == np.int32
