"""Pretrained word vectors (GloVe, word2vec, fastText text or binary, plain or gzipped).

Rounded to float16 once, when read, so training, evaluation and a reloaded workdir see the
same table; `save` keeps it as float16. glove.6B.50d.txt.gz (400,000 x 50, 68 MB) reads in
about 4 s on 2 cores: each chunk of lines is parsed by one numpy call.
"""

import dataclasses
import functools
import gzip
import hashlib
import os
import warnings
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np

from bilstm_jax.errors import CheckpointError, DataFileError

_CHUNK = 65536  # lines parsed per numpy call: fast, and bounds the float32 copy held at once


@dataclasses.dataclass(frozen=True, eq=False)
class WordVectors:
  """A table of word vectors.

  Attributes:
    words: row i's word, as written in the file.
    vectors: float16[len(words), dim], the table as the model uses it.

  Example:
    >>> wv = read('glove.6B.50d.txt.gz')
    >>> wv.lookup(['The', 'qwxz'])  # exact word, else its lowercased form, else -1
    array([ 0, -1], dtype=int32)
  """

  words: tuple[str, ...]
  vectors: np.ndarray

  def __post_init__(self):
    v = self.vectors
    if v.dtype != np.float16 or v.ndim != 2 or v.shape[0] != len(self.words):
      raise ValueError(f'vectors: want float16[{len(self.words)}, dim], got {v.dtype}{v.shape}')

  @property
  def dim(self) -> int:
    """The vectors' size: `vectors` is float16[len(words), dim]."""
    return self.vectors.shape[1]

  def __len__(self) -> int:
    return len(self.words)

  @functools.cached_property
  def _rows(self) -> dict[str, int]:
    # Built backwards so that a word listed twice keeps its first row.
    return dict(zip(reversed(self.words), range(len(self.words) - 1, -1, -1), strict=True))

  def lookup(self, tokens: Sequence[str]) -> np.ndarray:
    """Returns int32[len(tokens)]: each token's row, its lowercased form's, or -1."""
    rows = self._rows
    return np.array([rows.get(t, rows.get(t.lower(), -1)) for t in tokens], dtype=np.int32)

  def embed(self, sentences: Sequence[Sequence[str]], time: int) -> np.ndarray:
    """Returns float16[len(sentences), time, dim]: each token's vector.

    Tokens without a vector and padding are zeros; tokens beyond `time` are cut.
    """
    cut = [list(s)[:time] for s in sentences]
    lengths = np.array([len(s) for s in cut], dtype=np.int64)
    out = np.zeros((len(cut), time, self.dim), dtype=np.float16)
    rows = self.lookup([t for s in cut for t in s])
    sentence = np.repeat(np.arange(len(cut)), lengths)
    position = np.arange(rows.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    found = rows >= 0
    out[sentence[found], position[found]] = self.vectors[rows[found]]
    return out

  def fingerprint(self) -> str:
    """Returns the sha256 hex digest of the words and the float16 table."""
    return self._digest

  @functools.cached_property
  def _digest(self) -> str:  # hashed once: spec(), save and load all ask for it
    h = hashlib.sha256('\n'.join(self.words).encode('utf-8'))
    h.update(b'\0')
    h.update(np.ascontiguousarray(self.vectors, dtype='<f2').tobytes())
    return h.hexdigest()

  def save(self, path: str) -> None:
    """Writes an .npz of `words` (uint8, newline-joined UTF-8) and `vectors` atomically."""
    words = np.frombuffer('\n'.join(self.words).encode('utf-8'), dtype=np.uint8)
    with open(path + '.tmp', 'wb') as f:
      np.savez(f, words=words, vectors=self.vectors)
    os.replace(path + '.tmp', path)

  @classmethod
  def load(cls, path: str) -> 'WordVectors':
    """Reads what `save` wrote.

    Raises:
      CheckpointError: naming the path, if the file is missing or not such a file.
    """
    try:
      with np.load(path, allow_pickle=False) as z:
        words, vectors = z['words'], z['vectors']
      if words.dtype != np.uint8 or words.ndim != 1:
        raise ValueError(f'words are {words.dtype}{list(words.shape)}, not uint8 bytes')
      return cls(tuple(words.tobytes().decode().split('\n')) if len(vectors) else (), vectors)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
      raise CheckpointError(f'Word vectors {path} cannot be loaded: {e}') from e


def read(path: str, dim: int | None = None) -> WordVectors:
  """Reads a word-vector file.

  GloVe text is `word v1 ... vd` per line; word2vec/fastText text (.vec) adds a first line
  `count dim` (a first line of exactly two integers is taken as that header). Fields are
  separated by single spaces; trailing spaces and blank lines (the usual trailing one, and
  any in the middle) are skipped. word2vec binary is a header line `count dim`, then per word
  its UTF-8 bytes, a space, `dim` little-endian float32 and an optional newline. Values are
  parsed as float32, then rounded to float16 once.

  Args:
    path: the file; `.gz` at the end means gzipped, `.bin` or `.bin.gz` word2vec binary.
    dim: if given, the dimension the vectors must have.

  Returns:
    The words in file order and their float16[count, dim] vectors.

  Raises:
    DataFileError: `path:LINE: problem` for a missing, empty, ragged, non-numeric, non-UTF-8
      or truncated file, a value outside float16's range, or a header or `dim` that disagrees
      with the data (in binary files, line 1 is the header and line i + 1 the i-th vector).
  """
  if dim is not None and dim < 1:
    raise ValueError(f'dim must be >= 1; got {dim}.')
  if not os.path.isfile(path):
    raise DataFileError(f'{path}: no such word-vector file.')
  try:
    with gzip.open(path, 'rb') if path.endswith('.gz') else open(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise DataFileError(f'{path}: cannot be read: {e}') from e
  binary = path.endswith(('.bin', '.bin.gz'))
  return (_read_binary if binary else _read_text)(path, raw, dim)


def _error(path: str, line: int, message: str) -> DataFileError:
  return DataFileError(f'{path}:{line}: {message}')


def _header(path: str, line: bytes, dim: int | None) -> tuple[int, int] | None:
  fields = line.rstrip(b' \r').split(b' ')
  if len(fields) != 2 or not all(f.isdigit() for f in fields):
    return None
  count, file_dim = int(fields[0]), int(fields[1])
  if file_dim < 1 or count < 1:
    raise _error(path, 1, f'the header announces {count} vectors of dim {file_dim}')
  if dim is not None and file_dim != dim:
    raise _error(path, 1, f'header dim {file_dim}, expected {dim} (the dim asked for)')
  return count, file_dim


def _read_text(path: str, raw: bytes, dim: int | None) -> WordVectors:
  lines = raw.split(b'\n')
  header = _header(path, lines[0], dim)
  start = 1 if header else 0
  data = [line.rstrip(b' \r') for line in lines[start:]]
  keep = [i for i, line in enumerate(data) if line]  # blank lines are skipped
  line_no, data = np.array(keep, dtype=np.int64) + start + 1, [data[i] for i in keep]
  if not data:
    raise _error(path, 1, 'no vectors' + (' after the header' if header else ' (empty file)'))
  counts = [line.count(b' ') for line in data]
  expected = header[1] if header else dim or counts[0]
  why = f'(the dimension of line {line_no[0]})' if expected == counts[0] else '(the dim asked for)'
  why = "(the header's dim, line 1)" if header else why
  if expected < 1:
    raise _error(path, line_no[0], 'no values after the word')
  if counts.count(expected) != len(counts):
    row = next(i for i, c in enumerate(counts) if c != expected)
    raise _error(path, line_no[row], f'{counts[row]} values, expected {expected} {why}')
  if header and header[0] != len(data):
    raise _error(path, 1, f'the header announces {header[0]} vectors; the file has {len(data)}')
  words, vectors = [], np.empty((len(data), expected), dtype=np.float16)
  for begin in range(0, len(data), _CHUNK):
    parts = [line.partition(b' ') for line in data[begin : begin + _CHUNK]]
    words += [p[0] for p in parts]
    values = _parse(b'\n'.join([p[2] for p in parts]))
    if values.size != len(parts) * expected:
      for row in range(begin, begin + len(parts)):
        bad = [f for f in data[row].split(b' ')[1:] if _parse(f).size != 1]
        if bad:
          shown = bad[0].decode('utf-8', errors='replace')
          raise _error(path, line_no[row], f'value {shown!r} is not a number')
      raise _error(path, line_no[begin], 'a value in these lines is not a number')
    rows = slice(begin, begin + len(parts))
    vectors[rows] = _round(path, values.reshape(-1, expected), line_no[rows])
  return WordVectors(_decode_words(path, words, line_no), vectors)


def _parse(text: bytes) -> np.ndarray:
  """Parses whitespace-separated floats; stops early (a shorter array) at a non-number."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    try:
      return np.fromstring(text, dtype=np.float32, sep=' ')
    except ValueError:  # where the deprecation is an error
      return np.empty(0, dtype=np.float32)


def _round(path: str, values: np.ndarray, line_no: np.ndarray) -> np.ndarray:
  with np.errstate(over='ignore'):  # float32[rows, dim] too big for float16 -> inf -> error
    rounded = values.astype(np.float16)
  bad = np.argwhere(~np.isfinite(rounded))
  if bad.size:
    value = values[tuple(bad[0])]
    problem = 'is outside the float16 range' if np.isfinite(value) else 'is not finite'
    raise _error(path, line_no[bad[0][0]], f'value {value} {problem}')
  return rounded


def _decode_words(path: str, words: list[bytes], line_no: np.ndarray) -> tuple[str, ...]:
  joined = b'\n'.join(words)
  try:
    return tuple(joined.decode('utf-8').split('\n'))
  except UnicodeDecodeError as e:
    row = joined.count(b'\n', 0, e.start)
    raise _error(path, line_no[row], f'the word is not UTF-8 (byte {joined[e.start]:#x})') from e


def _read_binary(path: str, raw: bytes, dim: int | None) -> WordVectors:
  end = raw.find(b'\n')
  header = _header(path, raw[:end], dim) if end > 0 else None
  if header is None:
    raise _error(path, 1, "expected a header 'count dim' (word2vec binary)")
  count, file_dim = header
  size, pos, words, chunks = 4 * file_dim, end + 1, [], []
  for i in range(count):
    while pos < len(raw) and raw[pos] == 10:  # the optional newline after a vector
      pos += 1
    space = raw.find(b' ', pos)
    if space < 0 or space + 1 + size > len(raw):
      raise _error(path, i + 2, f'the file ends inside vector {i + 1} of {count} (truncated)')
    if raw.find(b'\n', pos, space) >= 0:
      raise _error(path, i + 2, f'vector {i + 1}: a newline inside its word (a corrupt file)')
    words.append(raw[pos:space])
    chunks.append(raw[space + 1 : space + 1 + size])
    pos = space + 1 + size
  if raw[pos:].strip():
    raise _error(path, count + 2, f'data after the {count} vectors the header announces')
  line_no = np.arange(count) + 2
  values = np.frombuffer(b''.join(chunks), dtype='<f4').reshape(count, file_dim)
  return WordVectors(_decode_words(path, words, line_no), _round(path, values, line_no))
