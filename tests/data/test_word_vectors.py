"""Word-vector files: every format, lookup, embedding, saving, and each error's file:line."""

import gzip
import os
import re

import numpy as np
import pytest

from bilstm_jax.data import word_vectors
from bilstm_jax.data.word_vectors import WordVectors, read
from bilstm_jax.errors import CheckpointError, DataFileError

# A repeated word, mixed case, non-ASCII and a word holding a no-break space (as in GloVe).
WORDS = ['the', 'The', 'cat', 'naïve', 'a\xa0b', 'cat', '東京']
VECS = np.random.default_rng(0).normal(size=(len(WORDS), 4)).astype(np.float32)


def _write(path, data):
  data = data.encode('utf-8') if isinstance(data, str) else data
  with gzip.open(path, 'wb') if str(path).endswith('.gz') else open(path, 'wb') as f:
    f.write(data)
  return str(path)


def _text(words, vecs, header=False, end='\n'):
  # repr of a float32 (as a Python float) reads back as exactly that float32.
  lines = [
    w + ' ' + ' '.join(repr(float(v)) for v in row) for w, row in zip(words, vecs, strict=True)
  ]
  head = [f'{len(words)} {vecs.shape[1]}'] if header else []
  return end.join(head + lines) + end


def _binary(words, vecs, newline=True):
  out = f'{len(words)} {vecs.shape[1]}\n'.encode()
  for w, row in zip(words, vecs, strict=True):
    out += w.encode('utf-8') + b' ' + row.astype('<f4').tobytes() + (b'\n' if newline else b'')
  return out


@pytest.mark.parametrize('gz', ['', '.gz'])
@pytest.mark.parametrize(
  'name, data',
  [
    ('glove.txt', _text(WORDS, VECS)),
    ('crlf.txt', _text(WORDS, VECS, end=' \r\n')),  # trailing spaces, Windows line ends
    ('fasttext.vec', _text(WORDS, VECS, header=True)),
    ('word2vec.bin', _binary(WORDS, VECS)),
    ('no_newlines.bin', _binary(WORDS, VECS, newline=False)),
  ],
)
def test_every_format_reads_the_same_table(tmp_path, name, data, gz):
  wv = read(_write(tmp_path / (name + gz), data))
  assert wv.words == tuple(WORDS)
  assert wv.vectors.dtype == np.float16 and wv.vectors.shape == (len(WORDS), 4)
  np.testing.assert_array_equal(wv.vectors, VECS.astype(np.float16))
  assert (len(wv), wv.dim) == (len(WORDS), 4)
  assert wv.fingerprint() == WordVectors(tuple(WORDS), VECS.astype(np.float16)).fingerprint()
  assert read(_write(tmp_path / ('again' + name + gz), data), dim=4).words == wv.words


def test_values_are_float32_rounded_to_float16_once(tmp_path):
  wv = read(_write(tmp_path / 'g.txt', 'x 0.1 -2.5 0.333333343 65519\n'))
  expected = np.float32(['0.1', '-2.5', '0.333333343', '65519']).astype(np.float16)
  np.testing.assert_array_equal(wv.vectors[0], expected)
  assert wv.vectors[0, 0] == np.float16(0.1) and wv.vectors[0, 3] == 65504


def test_blank_lines_are_skipped_and_lines_counted(tmp_path, monkeypatch):
  monkeypatch.setattr(word_vectors, '_CHUNK', 2)  # several parse chunks from a tiny file
  data = '5 2\na 1 2\n\nb 3 4\nc 5 6\n\nd 7 8\ne 9 10\n\n'
  wv = read(_write(tmp_path / 'v.vec', data))
  assert wv.words == ('a', 'b', 'c', 'd', 'e')
  np.testing.assert_array_equal(wv.vectors[:, 0], [1, 3, 5, 7, 9])
  with pytest.raises(DataFileError, match=re.escape("v.vec:8: value 'y' is not a number")):
    read(_write(tmp_path / 'v.vec', data.replace('9 10', 'y 10')))  # in the third chunk


def _table(words):
  return WordVectors(tuple(words), np.arange(len(words) * 2, dtype=np.float16).reshape(-1, 2))


def test_lookup_exact_then_lowercase_then_missing():
  wv = _table(['the', 'The', 'cat', 'cat', 'Dog'])
  ids = wv.lookup(['The', 'the', 'THE', 'cat', 'Cat', 'Dog', 'dog', 'DOG', 'bird'])
  # The first 'cat' row wins; only the token is lowercased, never the file's words.
  np.testing.assert_array_equal(ids, [1, 0, 0, 2, 2, 4, -1, -1, -1])
  assert ids.dtype == np.int32
  assert wv.lookup([]).shape == (0,) and wv.lookup([]).dtype == np.int32


def test_embed_pads_cuts_and_zeros_unknown_words():
  wv = _table(['the', 'cat'])
  x = wv.embed([['the', 'bird', 'Cat'], [], ['cat', 'the', 'cat', 'the']], time=3)
  assert x.shape == (3, 3, 2) and x.dtype == np.float16
  the, cat, zero = wv.vectors[0], wv.vectors[1], np.zeros(2, np.float16)
  np.testing.assert_array_equal(x[0], [the, zero, cat])
  np.testing.assert_array_equal(x[1], [zero, zero, zero])
  np.testing.assert_array_equal(x[2], [cat, the, cat])  # the fourth token is cut
  assert wv.embed([['the']], time=0).shape == (1, 0, 2)


def test_constructor_wants_float16_rows_per_word():
  with pytest.raises(ValueError, match='float16'):
    WordVectors(('a', 'b'), np.zeros((2, 3), np.float32))
  with pytest.raises(ValueError, match='float16'):
    WordVectors(('a',), np.zeros((2, 3), np.float16))


def test_save_load_round_trip_is_exact_and_compact(tmp_path):
  rng = np.random.default_rng(1)
  words = tuple(f'w{i}é' for i in range(1000)) + ('', 'a\xa0b')
  wv = WordVectors(words, rng.normal(size=(len(words), 16)).astype(np.float16))
  path = str(tmp_path / 'wv.npz')
  wv.save(path)
  back = WordVectors.load(path)
  assert back.words == words
  assert back.vectors.dtype == np.float16
  assert back.vectors.tobytes() == wv.vectors.tobytes()
  assert back.fingerprint() == wv.fingerprint()
  assert os.listdir(tmp_path) == ['wv.npz']  # the temporary file was renamed
  word_bytes = sum(len(w.encode('utf-8')) + 1 for w in words)
  assert os.path.getsize(path) < 1.2 * (len(words) * 16 * 2 + word_bytes) + 1024
  with np.load(path) as z:
    assert (z['words'].dtype, z['vectors'].dtype) == (np.uint8, np.float16)


def test_fingerprint_sees_words_and_values():
  wv = _table(['a', 'b'])
  other_value = WordVectors(wv.words, wv.vectors + np.float16(1))
  other_word = WordVectors(('a', 'c'), wv.vectors)
  assert len({wv.fingerprint(), other_value.fingerprint(), other_word.fingerprint()}) == 3
  assert wv.fingerprint() == _table(['a', 'b']).fingerprint()


def test_load_errors_name_the_path(tmp_path):
  with pytest.raises(CheckpointError, match='missing.npz'):
    WordVectors.load(str(tmp_path / 'missing.npz'))
  with pytest.raises(CheckpointError, match='junk.npz'):
    WordVectors.load(_write(tmp_path / 'junk.npz', b'not a zip file'))
  np.savez(tmp_path / 'other.npz', x=np.zeros(3))
  with pytest.raises(CheckpointError, match='other.npz'):
    WordVectors.load(str(tmp_path / 'other.npz'))
  np.savez(
    tmp_path / 'ragged.npz', words=np.frombuffer(b'a\nb', np.uint8), vectors=np.zeros((3, 2))
  )
  with pytest.raises(CheckpointError, match='ragged.npz'):
    WordVectors.load(str(tmp_path / 'ragged.npz'))


def test_missing_or_unreadable_file(tmp_path):
  with pytest.raises(DataFileError, match='nothere.txt'):
    read(str(tmp_path / 'nothere.txt'))
  with pytest.raises(DataFileError, match='notgzip.txt.gz'):
    read(_write(tmp_path / 'notgzip.txt.gz', b'plain text, not gzip'))


BIN = _binary(['a', 'b', 'c'], np.ones((3, 2), np.float32))


@pytest.mark.parametrize(
  'name, data, dim, line, message',
  [
    ('empty.txt', '', None, 1, 'no vectors (empty file)'),
    ('blank.txt', '\n \n\n', None, 1, 'no vectors (empty file)'),
    ('header_only.vec', '2 3\n', None, 1, 'no vectors after the header'),
    ('word_only.txt', 'a\nb\n', None, 1, 'no values after the word'),
    ('ragged.txt', 'a 1 2 3\nb 1 2 3\nc 1 2\n', None, 3, '2 values, expected 3 (the dimension'),
    ('long.txt', 'a 1 2\n\nb 1 2 3\n', None, 3, '3 values, expected 2 (the dimension of line 1)'),
    ('double_space.txt', 'a 1 2\nb 1  2\n', None, 2, '3 values, expected 2'),
    ('nan_word.txt', 'a 1 2\nb 1 x\n', None, 2, "value 'x' is not a number"),
    ('tab.txt', 'a 1 2\nb 1\t2 3\n', None, 2, "value '1\\t2' is not a number"),
    ('header_dim.vec', '2 3\na 1 2\nb 1 2\n', None, 2, "2 values, expected 3 (the header's dim"),
    ('header_count.vec', '3 2\na 1 2\nb 1 2\n', None, 1, 'announces 3 vectors; the file has 2'),
    ('zero_header.vec', '0 2\n', None, 1, 'announces 0 vectors'),
    ('dim_text.txt', 'a 1 2 3\n', 2, 1, '3 values, expected 2 (the dim asked for)'),
    ('dim_header.vec', '1 3\na 1 2 3\n', 2, 1, 'header dim 3, expected 2'),
    ('dim_binary.bin', BIN, 3, 1, 'header dim 2, expected 3'),
    ('utf8.txt', b'a 1 2\n\xff\xfeb 1 2\n', None, 2, 'not UTF-8'),
    ('utf8_value.txt', b'a 1 2\nb 1 \xff\n', None, 2, 'is not a number'),
    ('utf8.bin', BIN.replace(b'b ', b'\xff ', 1), None, 3, 'not UTF-8'),
    ('big.txt', 'a 1 2\nb 70000 1\n', None, 2, 'value 70000.0 is outside the float16 range'),
    ('inf.txt', 'a 1 2\nb 1 -inf\n', None, 2, 'value -inf is not finite'),
    ('nan.bin', BIN[:-5] + np.float32([np.nan]).tobytes() + b'\n', None, 4, 'not finite'),
    ('no_header.bin', b'a \x00\x00\x80\x3f\n', None, 1, "expected a header 'count dim'"),
    ('cut_vector.bin', BIN[:-3], None, 4, 'ends inside vector 3 of 3 (truncated)'),
    ('cut_word.bin', BIN[: BIN.index(b'b ') + 1], None, 3, 'ends inside vector 2 of 3'),
    ('extra.bin', BIN + b'd \x00\x00', None, 5, 'data after the 3 vectors'),
    ('newline_word.bin', BIN.replace(b'b ', b'b\nb ', 1), None, 3, 'a newline inside its word'),
  ],
)
@pytest.mark.parametrize('gz', ['', '.gz'])
def test_errors_name_file_and_line(tmp_path, name, data, dim, line, message, gz):
  path = _write(tmp_path / (name + gz), data)
  with pytest.raises(DataFileError) as info:
    read(path, dim=dim)
  text = str(info.value)
  assert text.startswith(f'{path}:{line}: '), text
  assert message in text and '\n' not in text
