"""Checks that a saved checkpoint is the one written, and names storage failures.

A checkpoint's manifest (`MANIFEST` in its directory) lists every other file's size and
SHA-256. It is written atomically after orbax has committed the checkpoint, and checked
before the checkpoint is restored: a truncated, deleted or changed file is found even when
what is left still deserialises (a flipped byte in an array's data does). Hashing costs one
read of the checkpoint at save and at restore; checkpoints are rewritten wholesale, so
there is nothing to hash incrementally.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys

# In each checkpoint: {relative path: [size, sha256]} of every other file in it.
MANIFEST = 'bilstm_jax_manifest.json'


def _digests(step_dir: str) -> dict[str, list]:
  out = {}
  for root, _, names in os.walk(step_dir):
    for name in names:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel.startswith(MANIFEST):
        continue
      digest = hashlib.sha256()
      with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
          digest.update(block)
      out[rel] = [os.path.getsize(path), digest.hexdigest()]
  return out


def write_manifest(step_dir: str) -> None:
  """Writes `step_dir/MANIFEST`: every file's size and SHA-256 (atomically)."""
  tmp = os.path.join(step_dir, MANIFEST + '.tmp')
  with open(tmp, 'w') as f:
    json.dump(_digests(step_dir), f, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, os.path.join(step_dir, MANIFEST))


class Damaged(Exception):
  """A checkpoint differs from its manifest."""


def verify(step_dir: str) -> None:
  """Raises an exception naming the first difference from the manifest (if it has one)."""
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.exists(path):
    return  # loading it is the check
  try:
    with open(path) as f:
      want = json.load(f)
  except (OSError, ValueError) as e:
    raise Damaged(f'{MANIFEST} cannot be read: {e}') from e
  have = _digests(step_dir)
  for rel, (size, digest) in sorted(want.items()):
    if rel not in have:
      raise Damaged(f'{rel} is missing')
    if have[rel][0] != size:
      raise Damaged(f'{rel} has {have[rel][0]} bytes, {size} when saved')
    if have[rel][1] != digest:
      raise Damaged(f'{rel} differs from its checksum')


def unreadable_metrics(directory: str) -> dict[int, str]:
  """{step: reason} of the checkpoints whose metrics file (read by orbax on opening) is bad."""
  bad = {}
  for name in os.listdir(directory) if os.path.isdir(directory) else []:
    path = os.path.join(directory, name, 'metrics', 'metrics')
    if name.isdigit() and os.path.exists(path):
      try:
        with open(path) as f:
          json.load(f)
      except (OSError, ValueError) as e:
        bad[int(name)] = f'metrics/metrics cannot be read: {e}'
  return bad


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO)


def storage_reason(e: BaseException) -> str | None:
  """'No space left on device' and the like, if `e` (or its cause) is a storage error."""
  seen = 0
  while e is not None and seen < 8:
    if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
      return os.strerror(e.errno)
    for code in _STORAGE_ERRNOS:  # tensorstore's errors carry the text, not the errno
      if os.strerror(code) in str(e):
        return os.strerror(code)
    e, seen = e.__cause__ or e.__context__, seen + 1
  return None


def short(e: Exception) -> str:
  """An exception as a short line (tensorstore's messages end in a long JSON spec)."""
  text = ' '.join(str(e).split('[tensorstore_spec=')[0].split())
  text = f'{type(e).__name__}: {text}'
  return text if len(text) <= 240 else text[:237] + '...'


def warn(message: str) -> None:
  """Prints `Warning: message` to stderr, where evaluate and predict show it too."""
  # stderr directly: the command line silences Python warnings and absl's below ERROR
  # in evaluate and predict, and this must be seen there too.
  print(f'Warning: {message}', file=sys.stderr, flush=True)
