"""Bytes of small, deliberately broken input files for the bad-input catalogue and fuzzing.

Every builder returns the bytes of a file (or a function of the test's tmp directory that
returns them, where the content names other files there). Nothing here reads the
developers' data: the fixtures are generated, so CI needs no `/work/shared`.
"""

from __future__ import annotations

import io
import json
import os
import struct
import wave

import numpy as np

CONLLU = (
  '# sent_id = 1\n'
  '1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n'
  '2\tcat\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_\n'
  '3\tsleeps\tsleep\tVERB\tVBZ\t_\t0\troot\t_\t_\n'
  '\n'
  '1\tA\ta\tDET\tDT\t_\t2\tdet\t_\t_\n'
  '2\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_\t_\n'
  '3\truns\trun\tVERB\tVBZ\t_\t0\troot\t_\t_\n'
  '\n'
)
CONLL = 'EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nPeter B-PER\nBlackburn I-PER\n\n'
TSV = 'sentence\tlabel\na gripping film \t1\ndull and slow \t0\n'
CSV = 'date,a,b\n2020-01-01 00:00:00,1.0,2.0\n2020-01-01 01:00:00,1.5,2.5\n'


def npz(**arrays) -> bytes:
  """An .npz archive of `arrays` (as `np.savez` writes it)."""
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  return buf.getvalue()


def good_npz() -> bytes:
  """Two float sequences of 3 steps with per-step targets."""
  return npz(inputs=np.zeros((2, 3, 1), np.float32), targets=np.zeros((2, 3, 1), np.float32))


def jsonl(*rows: dict) -> bytes:
  return ''.join(json.dumps(r) + '\n' for r in rows).encode()


def wav(rate: int = 8000, samples: int = 80, channels: int = 1, width: int = 2) -> bytes:
  """A PCM wav of silence as the standard library's `wave` writes it."""
  buf = io.BytesIO()
  with wave.open(buf, 'wb') as f:
    f.setnchannels(channels)
    f.setsampwidth(width)
    f.setframerate(rate)
    f.writeframes(bytes(samples * channels * width))
  return buf.getvalue()


def wav_field(offset: int, fmt: str, value: int) -> bytes:
  """A valid 8 kHz wav with one header field overwritten (22: channels, 24: rate,
  20: format tag, 34: bits per sample, 40: data size)."""
  data = bytearray(wav())
  struct.pack_into(fmt, data, offset, value)
  return bytes(data)


def text_run_config(tmp: str) -> dict:
  """configs/pos_ud.py:tiny reading CoNLL-U files written into `tmp` (as a dict)."""
  from configs import pos_ud

  config = pos_ud.get_config('tiny')
  config.data.train = os.path.join(tmp, 'train.conllu')
  config.data.dev = os.path.join(tmp, 'train.conllu')
  return config.to_dict()


def text_run_files(edit) -> dict:
  """A workdir of a text tagging run, as train.py leaves it but without checkpoints
  (`checkpoints/` exists, empty): the vocabulary checks run before any is read.

  Args:
    edit: spec dict -> None, the change to make to the task.json the task writes.
  """

  def config_json(tmp: str) -> bytes:
    return json.dumps(text_run_config(tmp)).encode()

  def task_json(tmp: str) -> bytes:
    import ml_collections

    from bilstm_jax import tasks

    task = tasks.from_config(ml_collections.ConfigDict(text_run_config(tmp)))
    spec = task.fit('train').spec()
    edit(spec)
    return json.dumps(spec).encode()

  return {
    'train.conllu': CONLLU.encode(),
    'run/checkpoints/.keep': b'',
    'run/config.json': config_json,
    'run/task.json': task_json,
  }


def fsdd_run_files(spec: dict) -> dict:
  """A workdir of an FSDD run (configs/fsdd.py:tiny) whose task.json is `spec`."""

  def config_json(tmp: str) -> bytes:
    from configs import fsdd

    config = fsdd.get_config('tiny')
    config.data.folder = os.path.join(tmp, 'rec')
    return json.dumps(config.to_dict()).encode()

  return {
    'run/checkpoints/.keep': b'',
    'run/config.json': config_json,
    'run/task.json': json.dumps(spec).encode(),
  }


def write_files(tmp: str, files: dict) -> None:
  """Writes {relative path: bytes or tmp -> bytes} under `tmp`, in order."""
  for name, content in files.items():
    path = os.path.join(tmp, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = content(tmp) if callable(content) else content
    with open(path, 'wb') as f:
      f.write(data)
