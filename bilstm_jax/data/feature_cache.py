"""A cache of speech features: one .npz per (list of wav files, `audio.FeatureConfig`).

The key covers every file's absolute path, size and mtime and every feature setting, so
a changed file or setting is a new entry. Files are written atomically (a temporary file
renamed into place), and an unreadable entry is a miss that is computed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np

from bilstm_jax.data.audio import FeatureConfig, compute_features
from bilstm_jax.data.wav import read_wav
from bilstm_jax.errors import DataFileError

# Bumped whenever the feature code changes its numbers, so old cache files are not reused.
_CACHE_VERSION = 1


def cache_key(paths: Sequence[str], config: FeatureConfig) -> str:
  """Hex sha256 of every file's absolute path, size and mtime, and every feature setting."""
  files = []
  for p in paths:
    try:
      st = os.stat(p)
    except OSError as e:
      raise DataFileError(f'{p}: cannot stat ({e.strerror}).') from e
    files.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
  payload = {'version': _CACHE_VERSION, 'config': dataclasses.asdict(config), 'files': files}
  return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_file(paths: Sequence[str], config: FeatureConfig, cache_dir: str, name: str) -> str:
  """The cache file `load_features` reads or writes for these files and settings."""
  return os.path.join(cache_dir, f'{name}-{cache_key(paths, config)[:24]}.npz')


def load_features(
  paths: Sequence[str],
  config: FeatureConfig,
  cache_dir: str | None = None,
  name: str = 'features',
) -> list[np.ndarray]:
  """Features of each file, from the cache when the files and settings are unchanged.

  The cache holds one .npz per (dataset name, key): 'features' float32[total_frames, dims]
  (every file's frames, concatenated) and 'offsets' int64[files + 1]. It is written to a
  temporary file in `cache_dir` and renamed into place, so a crash or a concurrent reader
  never sees half a file. Entries for old settings stay until `cache_dir` is deleted.

  Args:
    paths: wav files.
    config: feature settings; any change gives a new cache file.
    cache_dir: where cache files live (created if missing); None computes without caching.
    name: a label for the cache file name (e.g. 'fsdd-train').

  Returns:
    float32[frames_i, config.dims] for each path, in order.
  """
  if cache_dir is None:
    return _compute_all(paths, config)
  target = cache_file(paths, config, cache_dir, name)
  cached = _read_cache(target, len(paths))
  if cached is not None:
    return cached
  feats = _compute_all(paths, config)
  os.makedirs(cache_dir, exist_ok=True)
  offsets = np.cumsum([0] + [len(f) for f in feats]).astype(np.int64)
  fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f'.{name}-', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, features=np.concatenate(feats), offsets=offsets)
    os.replace(tmp, target)
  except BaseException:
    os.unlink(tmp)
    raise
  return feats


def _compute_all(paths: Sequence[str], config: FeatureConfig) -> list[np.ndarray]:
  return [compute_features(read_wav(p, config.sample_rate, config.resample), config) for p in paths]


def _read_cache(path: str, count: int) -> list[np.ndarray] | None:
  # An unreadable or inconsistent cache file is a miss (it is rewritten), not an error:
  # it holds nothing that cannot be computed again.
  if not os.path.isfile(path):
    return None
  try:
    with open(path, 'rb') as fh, np.load(fh, allow_pickle=False) as f:
      feats, offsets = f['features'], f['offsets']
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
    return None
  if (
    feats.ndim != 2
    or offsets.shape != (count + 1,)
    or not np.issubdtype(offsets.dtype, np.integer)
    or offsets[0] != 0
    or offsets[-1] != len(feats)
    or (np.diff(offsets) < 0).any()
  ):
    return None
  return [feats[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
