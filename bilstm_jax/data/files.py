"""Sequence data files for evaluation and prediction, and the predictions format.

Two input formats, chosen by extension:
  .npz:   arrays 'inputs' float[n, time, features], 'lengths' int[n] and, for evaluation,
          'targets' float[n, time, outputs] (the dataset dicts of `bilstm_jax.data.batching`).
  .jsonl: one sequence per line, `{"inputs": [[f, ...], ...], "targets": [[o, ...], ...]}`
          (targets only for evaluation); its length is the number of input rows.

Predictions are written as .jsonl (one line per sequence, in input order:
`{"index": i, "length": L, "predictions": [[o, ...] x L]}`) or, if the output path ends
in .npz, as arrays 'predictions' float[n, time, outputs] and 'lengths' int[n].
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from bilstm_jax.data import batching as data_lib
from bilstm_jax.errors import DataFileError

FORMATS = ('.npz', '.jsonl')


def read(path: str, input_size: int, need_targets: bool) -> dict:
  """Reads and validates a data file into a dataset dict (numpy arrays).

  Raises:
    DataFileError: naming the file (and the line for .jsonl) when it is missing,
      unreadable, of an unknown format, or holds malformed or invalid sequences.
  """
  ext = os.path.splitext(path)[1]
  if ext not in FORMATS:
    raise DataFileError(f'Data file {path}: unknown format {ext!r}; expected one of {FORMATS}.')
  if not os.path.isfile(path):
    raise DataFileError(f'Data file {path} does not exist.')
  dataset = _read_npz(path) if ext == '.npz' else _read_jsonl(path)
  keys = ('inputs', 'lengths', 'targets') if need_targets else ('inputs', 'lengths')
  missing = [k for k in keys if k not in dataset]
  if missing:
    raise DataFileError(f'Data file {path} lacks {missing}; it has {sorted(dataset)}.')
  dataset = {k: dataset[k] for k in keys}
  try:
    data_lib.check_batch(dataset, input_size)
  except (ValueError, TypeError) as e:
    raise DataFileError(f'Data file {path}: {e}') from e
  return dataset


def _read_npz(path: str) -> dict:
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise DataFileError(f'Data file {path} is not a readable .npz archive: {e}') from e


def _read_jsonl(path: str) -> dict:
  rows = []
  try:
    with open(path) as f:
      for lineno, line in enumerate(f, 1):
        if line.strip():
          rows.append((lineno, _parse_line(path, lineno, line)))
  except (OSError, UnicodeDecodeError) as e:
    raise DataFileError(f'Data file {path} cannot be read: {e}') from e
  if not rows:
    raise DataFileError(f'Data file {path} holds no sequences.')
  time = max(len(r['inputs']) for _, r in rows)
  num_features = 0
  for lineno, r in rows:
    if len(r['inputs']) and num_features and r['inputs'].shape[1] != num_features:
      raise DataFileError(
        f'{path}:{lineno}: inputs have {r["inputs"].shape[1]} features; earlier lines '
        f'have {num_features}.'
      )
    num_features = num_features or (r['inputs'].shape[1] if len(r['inputs']) else 0)
  out = {
    'inputs': np.zeros((len(rows), time, num_features), np.float32),
    'lengths': np.array([len(r['inputs']) for _, r in rows], np.int32),
  }
  if all('targets' in r for _, r in rows):
    outputs = rows[0][1]['targets'].shape[1]
    out['targets'] = np.zeros((len(rows), time, outputs), np.float32)
  for i, (lineno, r) in enumerate(rows):
    out['inputs'][i, : len(r['inputs'])] = r['inputs']
    if 'targets' in out:
      if r['targets'].shape != (len(r['inputs']), outputs):
        raise DataFileError(
          f'{path}:{lineno}: targets have shape {r["targets"].shape}; expected '
          f'({len(r["inputs"])}, {outputs}) (one row per input step).'
        )
      out['targets'][i, : len(r['inputs'])] = r['targets']
  return out


def _parse_line(path: str, lineno: int, line: str) -> dict:
  try:
    obj = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataFileError(f'{path}:{lineno}: not valid JSON ({e.msg}).') from e
  if not isinstance(obj, dict) or 'inputs' not in obj:
    raise DataFileError(f'{path}:{lineno}: expected an object with "inputs".')
  out = {}
  for key in ('inputs', 'targets'):
    if key in obj:
      try:
        arr = np.asarray(obj[key], np.float32)
      except (TypeError, ValueError) as e:
        raise DataFileError(f'{path}:{lineno}: "{key}" is not a numeric matrix ({e}).') from e
      if arr.ndim != 2 and arr.size:
        raise DataFileError(
          f'{path}:{lineno}: "{key}" must be a list of rows (time x size); got shape {arr.shape}.'
        )
      out[key] = arr.reshape(len(arr), -1) if arr.size else np.zeros((0, 0), np.float32)
  return out


def write_predictions(
  path: str, predictions: np.ndarray, lengths: np.ndarray, std: np.ndarray | None = None
) -> None:
  """Writes predictions float[n, time, outputs] (valid up to `lengths`) to `path`.

  `std` (same shape; an ensemble's spread over members) is written beside them if given.
  """
  predictions, lengths = np.asarray(predictions), np.asarray(lengths)
  extra = {} if std is None else {'std': np.asarray(std)}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  if path.endswith('.npz'):
    with open(tmp, 'wb') as f:
      np.savez(f, predictions=predictions, lengths=lengths, **extra)
  else:
    with open(tmp, 'w') as f:
      for i, (p, n) in enumerate(zip(predictions, lengths, strict=True)):
        row = {'index': i, 'length': int(n), 'predictions': p[: int(n)].tolist()}
        row.update({k: v[i, : int(n)].tolist() for k, v in extra.items()})
        f.write(json.dumps(row) + '\n')
  os.replace(tmp, path)
