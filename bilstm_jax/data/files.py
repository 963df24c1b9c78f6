"""Sequence data files (.npz, .jsonl) for every generic task, and writing predictions.

Two formats, chosen by extension. Every key is optional except `inputs`; which keys a
task needs, and their values' ranges, the task checks (`bilstm_jax.tasks`).

  .npz:   arrays
            inputs   float[n, time, features] (features) or int[n, time] (token ids)
            lengths  int[n]                   real steps per example (default: all of time)
            targets  float[n, time, outputs]  regression
            labels   int[n] (classification) or int[n, time] (tagging)
  .jsonl: one example per line, e.g.
            {"inputs": [[0.1, 0.2], [0.3, 0.4]], "targets": [[1.0], [2.0]]}
            {"inputs": [4, 17, 9], "labels": [0, 2, 1]}
            {"inputs": [[0.5], [0.1]], "labels": 3}
          The length of an example is the number of its input steps; `targets` and
          per-step `labels` have one entry per step.

Predictions: `prediction_rows` are the generic tasks' records (one per example, in input
order, with "index", "length" and each predicted array cut to the example's length);
`write_jsonl` writes any task's records as JSON lines, `write_columns` a tagger's as CoNLL
columns, and `write_predictions` the arrays themselves plus "lengths" (.npz).
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
import zlib

import numpy as np

from bilstm_jax.errors import DataFileError

FORMATS = ('.npz', '.jsonl')
KEYS = ('inputs', 'lengths', 'targets', 'labels')
_INT32 = np.iinfo(np.int32)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def read(path: str) -> dict:
  """Reads a data file into a dataset dict of numpy arrays, checking its structure.

  Inputs are float32 (features) or int32 (ids); targets float32; labels and lengths int32.

  Raises:
    DataFileError: naming the file (and the line, for .jsonl) when it is missing,
      unreadable, of an unknown format, or holds malformed or inconsistent examples.
  """
  ext = os.path.splitext(path)[1]
  if ext not in FORMATS:
    raise DataFileError(f'Data file {path}: unknown format {ext!r}; expected one of {FORMATS}.')
  if not os.path.isfile(path):
    raise DataFileError(f'Data file {path} does not exist.')
  dataset = _read_npz(path) if ext == '.npz' else _read_jsonl(path)
  return from_arrays(path, dataset)


def from_arrays(path: str, dataset: dict) -> dict:
  """Checks arrays' ranks and dtypes against each other; casts them to the standard.

  `path` names where they come from in messages (a file, or 'the arrays passed in').
  """
  unknown = sorted(set(dataset) - set(KEYS))
  if unknown:
    raise DataFileError(f'Data file {path}: unknown keys {unknown}; known: {list(KEYS)}.')
  if 'inputs' not in dataset:
    raise DataFileError(f'Data file {path} lacks "inputs"; it has {sorted(dataset)}.')
  x = np.asarray(dataset['inputs'])
  if np.issubdtype(x.dtype, np.floating):
    if x.ndim != 3:
      raise DataFileError(
        f'Data file {path}: float inputs must be [n, time, features]; got shape {x.shape}.'
      )
    x = _to_float32(path, 'inputs', x)
  elif np.issubdtype(x.dtype, np.integer):
    if x.ndim != 2:
      raise DataFileError(
        f'Data file {path}: integer inputs (token ids) must be [n, time]; got shape {x.shape}.'
      )
    x = _to_int32(path, 'inputs', x)
  else:
    raise DataFileError(f'Data file {path}: inputs must be float or integer; got {x.dtype}.')
  n, time = x.shape[:2]
  out = {'inputs': x}
  lengths = dataset.get('lengths')
  if lengths is None:
    lengths = np.full((n,), time, np.int32)
  lengths = np.asarray(lengths)
  if not np.issubdtype(lengths.dtype, np.integer) or lengths.shape != (n,):
    raise DataFileError(
      f'Data file {path}: lengths must be int[{n}]; got {lengths.dtype}{list(lengths.shape)}.'
    )
  if n and (lengths.min() < 0 or lengths.max() > time):
    i = int(np.argmax((lengths < 0) | (lengths > time)))
    raise DataFileError(
      f'Data file {path}: lengths must lie in [0, {time}] (the time axis); example {i} has '
      f'{lengths[i]}.'
    )
  out['lengths'] = _to_int32(path, 'lengths', lengths)
  if 'targets' in dataset:
    t = np.asarray(dataset['targets'])
    if not np.issubdtype(t.dtype, np.floating) or t.ndim != 3 or t.shape[:2] != (n, time):
      raise DataFileError(
        f'Data file {path}: targets must be float[{n}, {time}, outputs]; got '
        f'{t.dtype}{list(t.shape)}.'
      )
    out['targets'] = _to_float32(path, 'targets', t)
  if 'labels' in dataset:
    y = np.asarray(dataset['labels'])
    if not np.issubdtype(y.dtype, np.integer) or y.shape not in ((n,), (n, time)):
      raise DataFileError(
        f'Data file {path}: labels must be int[{n}] (one per sequence) or int[{n}, {time}] '
        f'(one per step); got {y.dtype}{list(y.shape)}.'
      )
    out['labels'] = _to_int32(path, 'labels', y)
  return out


def _to_float32(path: str, key: str, a: np.ndarray) -> np.ndarray:
  """`a` as float32; DataFileError for NaN, inf or a value float32 cannot hold."""
  bad = ~np.isfinite(a)
  if bad.any():
    raise DataFileError(
      f'Data file {path}: {key} contain NaN or inf (first at index {np.argwhere(bad)[0].tolist()}).'
    )
  big = np.abs(a) > _FLOAT32_MAX if a.dtype.itemsize > 4 else np.zeros(a.shape, bool)
  if big.any():
    i = np.argwhere(big)[0].tolist()
    raise DataFileError(
      f'Data file {path}: {key} hold {float(a[tuple(i)])!r} at index {i}, beyond the float32 range.'
    )
  return a.astype(np.float32)


def _to_int32(path: str, key: str, a: np.ndarray) -> np.ndarray:
  """`a` as int32; DataFileError for a value int32 cannot hold (no silent wrap-around)."""
  if a.size and (a.min() < _INT32.min or a.max() > _INT32.max):
    i = np.argwhere((a < _INT32.min) | (a > _INT32.max))[0].tolist()
    raise DataFileError(
      f'Data file {path}: {key} hold {int(a[tuple(i)])} at index {i}, beyond the int32 range.'
    )
  return a.astype(np.int32)


def _read_npz(path: str) -> dict:
  if not zipfile.is_zipfile(path):  # np.load would try to unpickle anything else
    raise DataFileError(f'Data file {path} is not a readable .npz archive (no zip structure).')
  try:
    # An open file of our own: numpy leaves its own open when the archive is malformed.
    with open(path, 'rb') as fh, np.load(fh, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except (
    OSError,
    ValueError,
    EOFError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
  ) as e:
    raise DataFileError(f'Data file {path} is not a readable .npz archive: {e}') from e


def _read_jsonl(path: str) -> dict:
  rows = []
  try:
    with open(path, 'rb') as f:
      for lineno, raw in enumerate(f, 1):
        try:
          line = raw.decode('utf-8-sig' if lineno == 1 else 'utf-8')
        except UnicodeDecodeError as e:
          raise DataFileError(
            f'Data file {path} cannot be read: line {lineno} is not UTF-8 ({e.reason} at '
            f'byte {e.start} of the line).'
          ) from e
        if line.strip():
          rows.append((lineno, _parse_line(path, lineno, line)))
  except OSError as e:
    raise DataFileError(f'Data file {path} cannot be read: {e}') from e
  if not rows:
    raise DataFileError(f'Data file {path} holds no sequences.')
  first_line, first = rows[0]
  integer = first['inputs'].dtype.kind == 'i'
  time = max(len(r['inputs']) for _, r in rows)
  width = {}
  for lineno, r in rows:
    if (r['inputs'].dtype.kind == 'i') != integer:
      raise DataFileError(
        f'{path}:{lineno}: "inputs" are {"floats" if integer else "integers"}; line '
        f'{first_line} has {"integers" if integer else "floats"} (mixed dtypes).'
      )
    for key in ('inputs', 'targets'):
      if key in r and r[key].ndim == 2 and len(r[key]):
        want = width.setdefault(key, (r[key].shape[1], lineno))
        if r[key].shape[1] != want[0]:
          raise DataFileError(
            f'{path}:{lineno}: "{key}" rows have {r[key].shape[1]} values; line {want[1]} '
            f'has {want[0]}.'
          )
    steps = len(r['inputs'])
    for key in ('targets', 'labels'):
      if key in r and r[key].ndim >= 1 and len(r[key]) != steps:
        raise DataFileError(
          f'{path}:{lineno}: "{key}" has {len(r[key])} steps; "inputs" has {steps} (one '
          'per input step).'
        )
  for key in ('targets', 'labels'):
    have = [lineno for lineno, r in rows if key in r]
    if have and len(have) != len(rows):
      missing = next(lineno for lineno, r in rows if key not in r)
      raise DataFileError(f'{path}:{missing}: no "{key}"; line {have[0]} has them.')
  n = len(rows)
  if integer:
    out = {'inputs': np.zeros((n, time), np.int64)}
  else:
    out = {'inputs': np.zeros((n, time, width.get('inputs', (0,))[0]), np.float32)}
  out['lengths'] = np.array([len(r['inputs']) for _, r in rows], np.int32)
  if 'targets' in first:
    out['targets'] = np.zeros((n, time, width.get('targets', (0,))[0]), np.float32)
  if 'labels' in first:
    per_step = [r['labels'].ndim == 1 for _, r in rows]
    if any(per_step) != all(per_step):
      lineno = rows[per_step.index(not per_step[0])][0]
      raise DataFileError(
        f'{path}:{lineno}: "labels" mixes one label per sequence and one per step.'
      )
    out['labels'] = np.zeros((n, time) if per_step[0] else (n,), np.int64)
  for i, (_, r) in enumerate(rows):
    steps = len(r['inputs'])
    for key, value in r.items():
      if key == 'labels' and value.ndim == 0:
        out[key][i] = value
      elif steps:
        out[key][i, :steps] = value
  return out


def _parse_line(path: str, lineno: int, line: str) -> dict:
  try:
    obj = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataFileError(f'{path}:{lineno}: not valid JSON ({e.msg}).') from e
  except RecursionError:
    raise DataFileError(f'{path}:{lineno}: JSON nested too deeply.') from None
  if not isinstance(obj, dict) or 'inputs' not in obj:
    raise DataFileError(f'{path}:{lineno}: expected an object with "inputs".')
  unknown = sorted(set(obj) - set(KEYS) - {'lengths'})
  if unknown:
    raise DataFileError(f'{path}:{lineno}: unknown keys {unknown}; known: {list(KEYS)}.')
  out = {}
  for key in ('inputs', 'targets', 'labels'):
    if key not in obj:
      continue
    try:
      arr = np.asarray(obj[key])
    except (TypeError, ValueError) as e:
      raise DataFileError(f'{path}:{lineno}: "{key}" is not a numeric array ({e}).') from e
    if arr.size == 0:
      arr = np.zeros((0,), np.int64 if key != 'targets' else np.float32)
    if arr.dtype == bool or not (
      np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
      raise DataFileError(f'{path}:{lineno}: "{key}" must hold numbers; got {arr.dtype}.')
    if key == 'labels':
      if not np.issubdtype(arr.dtype, np.integer) or arr.ndim > 1:
        raise DataFileError(
          f'{path}:{lineno}: "labels" must be an integer or a list of integers; got '
          f'{str(obj[key])[:60]}.'
        )
    elif key == 'inputs' and np.issubdtype(arr.dtype, np.integer) and arr.ndim == 1:
      pass  # token ids
    elif arr.ndim != 2 and arr.size:
      raise DataFileError(
        f'{path}:{lineno}: "{key}" must be a list of rows (time x size); got shape {arr.shape}.'
      )
    elif key == 'targets' or arr.ndim == 2:
      arr = arr.astype(np.float32)
    out[key] = arr
  if out['inputs'].ndim == 1 and out['inputs'].size == 0:
    out['inputs'] = out['inputs'].astype(np.int64)
  return out


def prediction_rows(
  arrays: dict, lengths: np.ndarray, time_keys: tuple[str, ...] = ()
) -> list[dict]:
  """One JSON-able row per example: its "index", "length" and each predicted array.

  Args:
    arrays: {name: array[n, ...]}.
    lengths: int[n] real steps per example.
    time_keys: the arrays whose axis 1 is time, cut to each example's length.

  Returns:
    [{'index': i, 'length': n_i, name: list}, ...], in input order.
  """
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  rows = []
  for i, n in enumerate(np.asarray(lengths)):
    row = {'index': i, 'length': int(n)}
    for k, v in arrays.items():
      row[k] = (v[i, : int(n)] if k in time_keys else v[i]).tolist()
    rows.append(row)
  return rows


def write_predictions(path: str, arrays: dict, lengths: np.ndarray) -> None:
  """Writes a task's predictions for n examples to `path` as .npz arrays, atomically.

  Args:
    path: the output file.
    arrays: {name: array[n, ...]}.
    lengths: int[n] real steps per example, saved as "lengths".
  """
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  with _atomic(path, 'wb') as f:
    np.savez(f, lengths=np.asarray(lengths), **arrays)


def write_jsonl(path: str, records: list[dict]) -> None:
  """Writes JSON-able records to `path`, one JSON line each (UTF-8), atomically."""
  with _atomic(path, 'w') as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + '\n' for r in records)


def write_columns(path: str, records: list[dict]) -> None:
  """Writes tagged tokens as CoNLL columns: `token<TAB>tag` lines, a blank line after each
  example.

  Args:
    path: the output file (.conll or .tsv).
    records: dicts with 'tokens' and 'tags' lists of equal length (a tagger's records).

  Raises:
    DataFileError: a record without tokens and tags (the task is not a tagger of words).
  """
  if any(not {'tokens', 'tags'} <= set(r) for r in records):
    raise DataFileError(
      f'{path}: CoNLL columns need records with "tokens" and "tags" (a text tagger\'s); '
      'write .jsonl for this task.'
    )
  with _atomic(path, 'w') as f:
    for r in records:
      f.writelines(f'{w}\t{t}\n' for w, t in zip(r['tokens'], r['tags'], strict=True))
      f.write('\n')


@contextlib.contextmanager
def _atomic(path: str, mode: str):
  """An open temporary file beside `path`, renamed onto it when the block succeeds."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, mode, **({} if 'b' in mode else {'encoding': 'utf-8'})) as f:
    yield f
  os.replace(tmp, path)
