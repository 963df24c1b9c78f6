"""Fuzzing every file reader: random bytes and near-valid mutations of good files.

A reader may return a well-formed result or raise the project's own `RunError` naming the
file; anything else (IndexError, KeyError, UnicodeDecodeError, ZeroDivisionError,
struct.error, a hang) is a bug in the reader. Each example runs under an alarm, so a hang
fails the test instead of stalling the suite.

Bounded for CI: `EXAMPLES` examples per reader with a fixed seed (derandomised, so the
suite is reproducible). A longer, random search:

  BILSTM_FUZZ_EXAMPLES=5000 .venv/bin/pytest -q tests/data/test_fuzz.py
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import io
import json
import os
import signal
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bilstm_jax.data import csv_series, feature_cache, files, fsdd, text, wav
from bilstm_jax.errors import RunError
from tests import bad_input_fixtures as fx

# A warning from a reader is a stray stderr line in train.py's one-line error: a failure.
pytestmark = pytest.mark.filterwarnings('error')
EXAMPLES = int(os.environ.get('BILSTM_FUZZ_EXAMPLES', '0')) or 150
FUZZ = settings(
  max_examples=EXAMPLES,
  deadline=datetime.timedelta(seconds=5),  # a tiny file read in seconds is a bug
  derandomize='BILSTM_FUZZ_EXAMPLES' not in os.environ,
  database=None,
  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HANG_S = 10


class Hang(Exception):
  pass


@contextlib.contextmanager
def alarm(seconds: int = HANG_S):
  """Raises `Hang` in the main thread after `seconds` (pytest and xdist run tests there)."""

  def fire(signum, frame):
    raise Hang(f'no answer within {seconds} s')

  old = signal.signal(signal.SIGALRM, fire)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def _outcome(read, data: bytes, name: str):
  """`read(path)` of `data` written to a file `name`: the result, or None after a RunError
  that names the file."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, name)
    with open(path, 'wb') as f:
      f.write(data)
    try:
      with alarm():
        return read(path)
    except RunError as e:
      assert name in str(e), f'the message does not name the file: {e}'
      return None


# ---------------------------------------------------------------------------- mutations

OPS = ('drop', 'duplicate', 'swap', 'tab', 'bytes', 'huge', 'empty', 'truncate')
BAD_BYTES = (b'\xff', b'\xe9', b'\x00', b'\xc3', b'\xef\xbb\xbf', b'\r', b'"')
HUGE = (b'1e999', b'-1e999', b'9' * 40, b'NaN', b'-Infinity', b'1e-400', b'-0', b'2147483648')


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
  """`data` after line-level and byte-level edits (positions taken modulo the sizes)."""
  for op, i, j in ops:
    lines = data.split(b'\n')
    a, b = i % len(lines), j % len(lines)
    if op == 'drop':
      del lines[a]
    elif op == 'duplicate':
      lines.insert(a, lines[a])
    elif op == 'swap':
      lines[a], lines[b] = lines[b], lines[a]
    elif op == 'tab':
      k = j % (len(lines[a]) + 1)
      lines[a] = lines[a][:k] + b'\t' + lines[a][k:]
    elif op == 'bytes':
      k = j % (len(lines[a]) + 1)
      lines[a] = lines[a][:k] + BAD_BYTES[i % len(BAD_BYTES)] + lines[a][k:]
    elif op == 'huge' or op == 'empty':
      fields = lines[a].replace(b'\t', b',').split(b',')
      k = j % len(fields)
      fields[k] = HUGE[i % len(HUGE)] if op == 'huge' else b''
      lines[a] = b','.join(fields) if b',' in lines[a] else b'\t'.join(fields)
    else:
      return data[: j % (len(data) + 1)]
    data = b'\n'.join(lines)
  return data


def near(good: bytes):
  """Mutations of a good file's bytes."""
  op = st.tuples(st.sampled_from(OPS), st.integers(0, 10**6), st.integers(0, 10**6))
  return st.lists(op, min_size=1, max_size=4).map(lambda ops: mutate(good, ops))


def inputs(good: bytes):
  return st.one_of(st.binary(max_size=600), near(good))


# ------------------------------------------------------------------------ well-formed


def check_dataset(d: dict) -> None:
  x, lengths = d['inputs'], d['lengths']
  assert x.dtype in (np.float32, np.int32) and x.ndim == (3 if x.dtype == np.float32 else 2)
  assert lengths.dtype == np.int32 and lengths.shape == x.shape[:1]
  assert ((lengths >= 0) & (lengths <= x.shape[1])).all()
  if x.dtype == np.float32:
    assert np.isfinite(x).all()
  if 'targets' in d:
    assert d['targets'].dtype == np.float32 and np.isfinite(d['targets']).all()
  if 'labels' in d:
    assert d['labels'].dtype == np.int32


def check_tagged(sentences) -> None:
  assert sentences
  for s in sentences:
    assert len(s.tokens) == len(s.tags) > 0
    assert all(isinstance(t, str) for t in s.tokens + s.tags)


JSONL = fx.jsonl(
  {'inputs': [[0.5, 1.0], [1.5, 2.0]], 'targets': [[1.0], [2.0]], 'labels': [0, 1]},
  {'inputs': [[0.1, 0.2]], 'targets': [[3.0]], 'labels': [2]},
)


NUMBERS = st.recursive(
  st.integers() | st.floats() | st.none() | st.booleans() | st.text(max_size=2),
  lambda inner: st.lists(inner, max_size=3),
  max_leaves=8,
)


@st.composite
def jsonl_docs(draw) -> bytes:
  """Lines of JSON objects with the reader's keys holding random nested numbers."""
  keys = st.sampled_from([*files.KEYS, 'other'])
  rows = draw(st.lists(st.dictionaries(keys, NUMBERS, max_size=4), min_size=1, max_size=3))
  return ''.join(json.dumps(r) + '\n' for r in rows).encode()


@FUZZ
@given(st.one_of(inputs(JSONL), jsonl_docs()))
def test_jsonl(data):
  d = _outcome(files.read, data, 'x.jsonl')
  if d is not None:
    check_dataset(d)


@st.composite
def npz_archives(draw) -> bytes:
  """An .npz of random arrays (random dtypes and shapes) under the reader's keys."""
  dtypes = st.one_of(
    hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
    hnp.boolean_dtypes(), hnp.complex_number_dtypes(), hnp.unicode_string_dtypes(max_len=2),
  )  # fmt: skip
  keys = draw(st.sets(st.sampled_from([*files.KEYS, 'other']), min_size=1, max_size=4))
  arrays = {}
  for key in sorted(keys):
    shape = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
    arrays[key] = draw(hnp.arrays(draw(dtypes), shape))
  return fx.npz(**arrays)


@FUZZ
@given(st.one_of(npz_archives(), st.binary(max_size=400), near(fx.good_npz())))
def test_npz(data):
  d = _outcome(files.read, data, 'x.npz')
  if d is not None:
    check_dataset(d)


@st.composite
def conllu_docs(draw) -> bytes:
  """Lines of 8-11 tab-separated fields with random IDs, comments and blank lines."""
  ids = st.sampled_from(['1', '2', '3', '0', '1-2', '2.1', '1-x', 'x', '', '-1', '01'])
  word = st.lists(st.sampled_from(['a', '_', '', ' ']), min_size=7, max_size=10)
  line = st.one_of(
    st.tuples(ids, word).map(lambda t: '\t'.join([t[0], *t[1]])),
    st.sampled_from(['', '# c', ' ', '\t']),
  )
  return '\n'.join(draw(st.lists(line, max_size=8))).encode()


@FUZZ
@given(st.one_of(inputs(fx.CONLLU.encode()), conllu_docs()))
def test_conllu(data):
  sentences = _outcome(text.read_conllu, data, 'x.conllu')
  if sentences is not None:
    check_tagged(sentences)


@FUZZ
@given(inputs(fx.CONLL.encode()))
def test_conll(data):
  sentences = _outcome(text.read_conll, data, 'x.conll')
  if sentences is not None:
    check_tagged(sentences)


@FUZZ
@given(inputs(fx.TSV.encode()))
def test_tsv(data):
  rows = _outcome(text.read_tsv, data, 'x.tsv')
  if rows is not None:
    assert rows and all(r.text and r.label for r in rows)


@FUZZ
@given(inputs(b'the cat sleeps\n\na dog runs\n'))
def test_raw_text(data):
  lines = _outcome(text.read_raw, data, 'x.txt')
  if lines is not None:
    assert all(isinstance(t, str) for line in lines for t in line)


@st.composite
def wav_files(draw) -> bytes:
  """A good wav with random header bytes overwritten, and maybe cut short."""
  data = bytearray(fx.wav(rate=draw(st.sampled_from([8000, 16000])), samples=20))
  for _ in range(draw(st.integers(0, 4))):
    at = draw(st.integers(0, 43))
    data[at : at + 4] = draw(st.binary(min_size=4, max_size=4))
  cut = draw(st.integers(0, len(data)))
  return bytes(data[: cut if draw(st.booleans()) else len(data)])


@FUZZ
@given(st.one_of(wav_files(), st.binary(max_size=100).map(lambda b: b'RIFF' + b)), st.booleans())
def test_wav(data, resample):
  x = _outcome(lambda p: wav.read_wav(p, 8000, resample), data, '0_x_1.wav')
  if x is not None:
    assert x.dtype == np.float32 and x.ndim == 1 and len(x)
    assert np.isfinite(x).all()


CELLS = ('1', '2.5', '-3', '', ' ', 'nan', 'inf', '1e999', 'x', '"a,b"', '"', 'NaT',
         '2020-01-01', '2020-01-01 01:00:00', '2020-13-45', '99999-01-01')  # fmt: skip


@st.composite
def csv_tables(draw) -> bytes:
  """A header of (possibly repeated) names and rows of random cells of random widths."""
  header = draw(st.lists(st.sampled_from(['date', 'a', 'b', '']), min_size=1, max_size=4))
  row = st.lists(st.sampled_from(CELLS), max_size=5).map(','.join)
  rows = draw(st.lists(row, max_size=5))
  return '\n'.join([','.join(header), *rows]).encode()


@FUZZ
@given(st.one_of(inputs(fx.CSV.encode()), csv_tables()), st.sampled_from(['date', None]))
def test_csv(data, time_column):
  series = _outcome(lambda p: csv_series.read_csv(p, time_column), data, 'x.csv')
  if series is not None:
    assert series.values.ndim == 2 and np.isfinite(series.values).all()
    assert len(series.lines) == len(series) and (np.diff(series.lines) > 0).all()


@FUZZ
@given(st.lists(st.text(max_size=12), max_size=4))
def test_fsdd_folder_names(names):
  with tempfile.TemporaryDirectory() as tmp:
    folder = os.path.join(tmp, 'rec')
    os.makedirs(folder)
    for name in names:
      safe = name.replace('/', '_').replace('\x00', '_')
      if safe not in ('', '.', '..'):
        open(os.path.join(folder, safe), 'wb').close()
    try:
      with alarm():
        recs = fsdd.list_recordings(folder)
    except RunError as e:
      assert 'rec' in str(e)
    else:
      assert recs and all(0 <= r.digit <= 9 for r in recs)


@FUZZ
@given(inputs(b'0_jackson_1.wav\n# a comment\n1_jackson_2.wav\n'))
def test_wav_list(data):
  from bilstm_jax.tasks import speech

  task = speech.SpokenDigitTask(folder='unused')
  recs = _outcome(lambda p: task.recordings(p, False), data, 'list.txt')
  if recs is not None:
    assert recs and all(r.path for r in recs)


@functools.cache
def _task_json() -> bytes:
  with tempfile.TemporaryDirectory() as tmp:
    fx.write_files(tmp, fx.text_run_files(lambda spec: None))
    with open(os.path.join(tmp, 'run', 'task.json'), 'rb') as f:
      return f.read()


@pytest.fixture(scope='module')
def text_task():
  import ml_collections

  from bilstm_jax import tasks

  with tempfile.TemporaryDirectory() as tmp:
    config = ml_collections.ConfigDict(fx.text_run_config(tmp))
    return tasks.from_config(config)


JSON = st.recursive(
  st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
  lambda inner: (
    st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
  ),
  max_leaves=6,
)


@st.composite
def task_specs(draw) -> object:
  """A text task's task.json with random parts replaced: a key's value by any JSON, or a
  saved vocabulary's text by a mutation of it."""
  spec = json.loads(_task_json())
  for _ in range(draw(st.integers(1, 3))):
    block = draw(st.sampled_from(['task', 'sizes', 'vocabularies', 'fingerprints', '']))
    if not block:
      return draw(JSON)
    if block == 'task' or not isinstance(spec.get(block), dict) or draw(st.booleans()):
      spec[block] = draw(JSON)
      continue
    key = draw(st.sampled_from(sorted(spec[block]) or ['x']))
    old = spec[block].get(key)
    if isinstance(old, str) and draw(st.booleans()):
      spec[block][key] = draw(near(old.encode())).decode('utf-8', 'replace')
    elif draw(st.booleans()):
      spec[block].pop(key, None)
    else:
      spec[block][key] = draw(JSON)
  return spec


@FUZZ
@given(task_specs())
def test_task_json_vocabularies(text_task, spec):
  """A workdir's task.json (vocabularies, fingerprints, sizes) damaged: `with_spec`
  restores the task or raises a RunError naming task.json."""
  try:
    with alarm():
      task = text_task.with_spec(spec)
  except RunError as e:
    assert 'task.json' in str(e) or 'saved task' in str(e), str(e)
  else:
    assert len(task.vocabs['words']) == task.sizes['vocab_size']


@FUZZ
@given(inputs(json.dumps({'model': {'hidden_size': 4}, 'seed': 0}).encode()))
def test_saved_config(data):
  from bilstm_jax.training import saved_config

  with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, 'config.json'), 'wb') as f:
      f.write(data)
    try:
      with alarm():
        config = saved_config.get_config(tmp)
    except ValueError as e:  # a config file's error: train.py prints it as `Error: --config`
      assert 'config.json' in str(e), str(e)
    else:
      assert config is not None


def _cache_bytes(arrays: dict) -> bytes:
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  return buf.getvalue()


@FUZZ
@given(
  st.one_of(
    st.binary(max_size=300),
    near(_cache_bytes({'features': np.zeros((3, 2), np.float32), 'offsets': np.array([0, 3])})),
    st.builds(
      lambda f, o: _cache_bytes({'features': f, 'offsets': o}),
      hnp.arrays(hnp.floating_dtypes(), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)),
      hnp.arrays(
        st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes()),
        hnp.array_shapes(min_dims=0, max_dims=2, max_side=4),
      ),
    ),
  )
)
def test_feature_cache(data):
  """A damaged feature cache is a miss (None, recomputed), never a crash."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'c.npz')
    with open(path, 'wb') as f:
      f.write(data)
    with alarm():
      feats = feature_cache._read_cache(path, 1)
  if feats is not None:
    assert len(feats) == 1 and feats[0].ndim == 2
