"""Generated problems for the generic tasks, written as .npz or .jsonl files."""

import json

import numpy as np


def tagging(num: int, seed: int, max_len: int = 12, min_len: int = 3) -> dict:
  """Labels that need both directions: label[t] = 2 * [x[t-1, 0] > 0] + [x[t+1, 1] > 0].

  Inputs are float features [n, time, 2] of random signs; outside a sequence x counts as
  negative. A forward-only model cannot see x[t+1], so it is right at most half the time
  on the second bit (at most ~50% accuracy); a bidirectional one can be exact.
  """
  rng = np.random.default_rng(seed)
  lengths = rng.integers(min_len, max_len + 1, num).astype(np.int32)
  x = np.sign(rng.standard_normal((num, max_len, 2))).astype(np.float32)
  valid = np.arange(max_len)[None, :] < lengths[:, None]
  x *= valid[..., None]
  prev = np.pad(x[:, :-1, 0], ((0, 0), (1, 0))) > 0
  nxt = np.pad(x[:, 1:, 1], ((0, 0), (0, 1))) > 0
  labels = (2 * prev + nxt).astype(np.int32) * valid
  return {'inputs': x, 'lengths': lengths, 'labels': labels}


def classification(num: int, seed: int, max_len: int = 12, vocab: int = 6) -> dict:
  """Token ids [n, time]; the label says whether token 1 outnumbers token 2 in the whole
  sequence (ties drawn as neither: resampled away), so no single step decides it."""
  rng = np.random.default_rng(seed)
  rows, labels = [], []
  while len(rows) < num:
    n = int(rng.integers(3, max_len + 1))
    ids = rng.integers(1, vocab, n)
    ones, twos = int((ids == 1).sum()), int((ids == 2).sum())
    if ones == twos:
      continue
    rows.append(ids)
    labels.append(int(ones > twos))
  lengths = np.array([len(r) for r in rows], np.int32)
  inputs = np.zeros((num, max_len), np.int32)
  for i, r in enumerate(rows):
    inputs[i, : len(r)] = r
  return {'inputs': inputs, 'lengths': lengths, 'labels': np.array(labels, np.int32)}


def regression(num: int, seed: int, max_len: int = 10) -> dict:
  """y[t] = x[t, 0] - x[t, 1], float features [n, time, 2]: learnable step by step."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, max_len + 1, num).astype(np.int32)
  x = rng.standard_normal((num, max_len, 2)).astype(np.float32)
  valid = (np.arange(max_len)[None, :] < lengths[:, None])[..., None]
  x *= valid
  return {'inputs': x, 'lengths': lengths, 'targets': (x[..., :1] - x[..., 1:]) * valid}


def write(path, dataset: dict) -> str:
  """Writes a dataset as .npz, or as .jsonl (one example per line, cut to its length)."""
  path = str(path)
  if path.endswith('.npz'):
    np.savez(path, **dataset)
    return path
  with open(path, 'w') as f:
    for i, n in enumerate(dataset['lengths']):
      row = {'inputs': dataset['inputs'][i, :n].tolist()}
      if 'targets' in dataset:
        row['targets'] = dataset['targets'][i, :n].tolist()
      if 'labels' in dataset:
        y = dataset['labels'][i]
        row['labels'] = y[:n].tolist() if y.ndim else int(y)
      f.write(json.dumps(row) + '\n')
  return path
