"""A run's directory: its files, its one-writer lock and its compatibility checks (which
config changes a resumed run accepts: `RESUMABLE_KEYS`, `check_compatible`).

WORKDIR/config.json      the config the run was trained with
WORKDIR/task.json        what the task found in the training data (sizes, vocabulary)
WORKDIR/checkpoints/     orbax checkpoints (`training.checkpoint`)
WORKDIR/metrics.jsonl    events; WORKDIR/tensorboard/, plots/, export/, summary.json
WORKDIR/.lock            held (an OS file lock) by the process training in it
"""

from __future__ import annotations

import fcntl
import json
import os
import socket

from bilstm_jax import errors
from bilstm_jax.training import checkpoint

CONFIG = 'config.json'
TASK = 'task.json'
LOCK = '.lock'


def write_json(path: str, obj) -> None:
  """Writes JSON atomically (temporary file, then rename).

  Raises:
    errors.RunError: the file cannot be written (no permission, a full disk), naming it.
  """
  tmp = path + '.tmp'
  try:
    with open(tmp, 'w') as f:
      json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
  except OSError as e:
    raise _not_writable(path, e) from e


def append_jsonl(path: str, obj) -> None:
  """Appends one JSON line, written and flushed in one call so a line is whole or absent.

  Raises:
    errors.RunError: the file cannot be written, naming it.
  """
  line = json.dumps(obj, sort_keys=True) + '\n'
  try:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      os.write(fd, line.encode('utf-8'))
      os.fsync(fd)
    finally:
      os.close(fd)
  except OSError as e:
    raise _not_writable(path, e) from e


def create(workdir: str) -> None:
  """Creates `workdir` (and its parents); a RunError naming it if it cannot be created."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise _not_writable(workdir, e) from e


def _not_writable(path: str, e: OSError) -> errors.RunError:
  return errors.RunError(
    f'Cannot write {path}: {e.strerror or e}. Make {os.path.dirname(path)} writable (or free '
    'space) and rerun, or use another --workdir.'
  )


def read_json(path: str) -> dict | None:
  """The JSON object in `path`, or None if there is no such file."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise errors.CheckpointError(f'{path} cannot be read: {e}') from e


class Lock:
  """An exclusive OS lock on WORKDIR/.lock: one training process per workdir.

  The kernel drops the lock when the holder exits, however it exits (SIGKILL included),
  so a killed run never leaves a stale lock. The file keeps the holder's pid and host so
  that a second run can say who holds it.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK)
    self.fd = None

  def acquire(self) -> Lock:
    """Takes the lock without waiting; RunError naming the holder if another process has it."""
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise _not_writable(self.path, e) from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 200).decode(errors='replace').strip() or 'another process'
      os.close(fd)
      raise errors.RunError(
        f'The workdir {os.path.dirname(self.path)} is in use by {holder}; wait for it to '
        'finish, stop it, or use another --workdir.'
      ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f'process {os.getpid()} on {socket.gethostname()}'.encode())
    self.fd = fd
    return self

  def release(self) -> None:
    """Drops the lock (a no-op when not held)."""
    if self.fd is not None:
      fcntl.flock(self.fd, fcntl.LOCK_UN)
      os.close(self.fd)
      self.fd = None

  def __enter__(self) -> Lock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def check_config(workdir: str, config_dict: dict) -> bool:
  """Raises CheckpointError if `workdir` holds a run of an incompatible config.

  Returns:
    True if the workdir already holds a run (its config.json).
  """
  path = os.path.join(workdir, CONFIG)
  saved = read_json(path)
  if saved is None:
    return False
  check_compatible(saved, config_dict, path)
  return True


def check_task(workdir: str, spec: dict) -> None:
  """Raises CheckpointError if the workdir's task.json differs from `spec` (the training
  data of a resumed run changed its sizes or vocabulary)."""
  path = os.path.join(workdir, TASK)
  saved = read_json(path)
  if saved is not None and json.loads(json.dumps(spec)) != saved:
    raise errors.CheckpointError(
      f'{path} differs from what the task finds in the training data now (sizes, classes or '
      'vocabulary changed); the checkpoints cannot continue. Use another --workdir.'
    )


def open_checkpoints(
  workdir: str, metric: str, mode: str, keep_best: int, read_only: bool = False
) -> checkpoint.Checkpoints:
  """The checkpoints of `workdir`, ranked by `metric` (`mode` 'min' or 'max'), keeping
  the `keep_best` best and the newest; `read_only` for evaluate and predict."""
  return checkpoint.Checkpoints(
    workdir, metric=metric, mode=mode, keep_best=keep_best, read_only=read_only
  )


# Config keys that may change when a run is resumed (how long to train, how to log or
# save); every other key must match the run already in the workdir.
RESUMABLE_KEYS = (
  'train.epochs',
  'train.num_steps',
  'train.log_every_epochs',
  'train.early_stopping_patience',
  'checkpoint.save_every_steps',
  'checkpoint.keep_best',
  'data.test',
  # How many devices and processes run it: a checkpoint restores on any mesh.
  'mesh.member',
  'mesh.data',
  'mesh.model',
  'distributed.coordinator',
  'distributed.num_processes',
  'distributed.process_id',
  'distributed.auto_detect',
  'distributed.timeout_s',
)


def _flatten(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def check_compatible(saved: dict, current: dict, where: str) -> None:
  """Raises CheckpointError if `current` config cannot continue the run saved with `saved`.

  Args:
    saved: the saved run's config dict (`config.to_dict()`).
    current: the config dict of the run that wants to continue it.
    where: the file `saved` came from, for the message.
  """
  # As JSON stores them (a config's tuples come back as lists).
  a, b = (_flatten(json.loads(json.dumps(d))) for d in (saved, current))
  diffs = [
    f'{k}: {a.get(k, "<absent>")!r} in the workdir, {b.get(k, "<absent>")!r} now'
    for k in sorted(set(a) | set(b))
    if k not in RESUMABLE_KEYS and a.get(k, '<absent>') != b.get(k, '<absent>')
  ]
  if diffs:
    raise errors.CheckpointError(
      f'The workdir holds a run with an incompatible config ({where}): '
      + '; '.join(diffs)
      + '. Use another --workdir, or the same values (only '
      + ', '.join(RESUMABLE_KEYS)
      + ' may change on resume).'
    )
