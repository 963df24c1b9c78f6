"""Checks, sizes and axes of a dataset of arrays: what `Task`'s default .npz/.jsonl source
and the objectives' label checks share (numpy only, no model)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bilstm_jax.errors import CheckpointError, DataFileError


def need(dataset: dict, key: str, where: str, what: str) -> Any:
  """`dataset[key]`; DataFileError naming `where` and the `what` task if it is missing."""
  if key not in dataset:
    raise DataFileError(f'{where} has no "{key}": the {what} task needs them.')
  return dataset[key]


def check_inputs(inputs: np.ndarray, sizes: dict, where: str) -> None:
  """Raises DataFileError naming `where` if `inputs` do not fit the fitted `sizes`.

  Args:
    inputs: int[n, time] token ids or float[n, time, features].
    sizes: 'vocab_size' (ids must lie in [0, vocab_size)) or 'input_size' (features per
      step), or neither (before `fit`: nothing to check).
  """
  x = inputs
  if 'vocab_size' in sizes:
    if x.dtype.kind != 'i':
      raise DataFileError(f'{where}: inputs are float features; the model takes token ids.')
    bad = (x < 0) | (x >= sizes['vocab_size'])
    if bad.any():
      i = np.argwhere(bad)[0].tolist()
      raise DataFileError(
        f'{where}: token id {x[tuple(i)]} at {i} is outside [0, {sizes["vocab_size"]}) '
        '(the vocabulary of the training file).'
      )
  elif 'input_size' in sizes:
    if x.dtype.kind == 'i':
      raise DataFileError(f'{where}: inputs are token ids; the model takes float features.')
    if x.shape[-1] != sizes['input_size']:
      raise DataFileError(
        f'{where}: inputs have {x.shape[-1]} features; the model expects '
        f'{sizes["input_size"]} (as in the training data).'
      )


def check_labels(labels: np.ndarray, lengths: np.ndarray, num_classes: int, where: str):
  """Raises DataFileError naming `where` for a label outside [0, num_classes).

  Args:
    labels: int[n, time] (a label per step: the real steps are checked) or int[n] (one
      per sequence: the non-empty ones are checked).
    lengths: int[n].
  """
  steps = np.arange(labels.shape[-1])[None, :] < lengths[:, None]
  real = steps if labels.ndim == 2 else lengths > 0
  bad = real & ((labels < 0) | (labels >= num_classes))
  if bad.any():
    i = np.argwhere(bad)[0].tolist()
    raise DataFileError(
      f'{where}: label {labels[tuple(i)]} at {i} is outside [0, {num_classes}) (the classes '
      'of the training data).'
    )


def fitted_sizes(inputs: np.ndarray, labels: np.ndarray, lengths: np.ndarray) -> dict:
  """The sizes a model of these arrays needs: 'vocab_size' (int inputs: the largest id +
  1) or 'input_size', and 'output_size' (float labels: targets) or 'num_classes' (int
  labels: the largest real one + 1)."""
  ids = inputs.dtype.kind == 'i'
  sizes = (
    {'vocab_size': int(inputs.max(initial=0)) + 1} if ids else {'input_size': inputs.shape[-1]}
  )
  if labels.dtype.kind == 'f':
    return {**sizes, 'output_size': labels.shape[-1]}
  real = np.arange(labels.shape[-1]) < lengths[:, None] if labels.ndim == 2 else lengths > 0
  sizes['num_classes'] = int(labels[real].max(initial=0)) + 1
  return sizes


def zeros_batch(sizes: dict, batch_size: int, time: int) -> dict:
  """Zeros of a batch's `inputs` (int32 ids with 'vocab_size' in `sizes`, else float32
  features of 'input_size') and `lengths`, all `time` steps long."""
  if 'vocab_size' in sizes:
    inputs = np.zeros((batch_size, time), np.int32)
  else:
    inputs = np.zeros((batch_size, time, sizes['input_size']), np.float32)
  return {'inputs': inputs, 'lengths': np.full((batch_size,), time, np.int32)}


def named_axes(batch: dict, time_keys: tuple[str, ...]) -> dict[str, tuple[str | None, ...]]:
  """{key: axis names} of a batch's arrays: 'batch', then 'time' for `time_keys`, then
  None (fixed) for the rest."""
  axes = {}
  for key, x in batch.items():
    names = ('batch', 'time' if key in time_keys else None) + (None,) * x.ndim
    axes[key] = names[: x.ndim]
  return axes


def full_widths(dataset: dict, width_keys: tuple[str, ...]) -> np.ndarray:
  """int[n]: every example at the widest of the `width_keys` arrays' axis 2 (0 without)."""
  full = max((dataset[k].shape[2] for k in width_keys), default=0)
  return np.full(len(dataset['lengths']), full, np.int64)


def saved_sizes(spec, name: str) -> dict:
  """The sizes of a saved `Task.spec()` (a workdir's task.json) of the `name` task.

  Raises:
    CheckpointError: the spec or its "sizes" is no JSON object.
    DataFileError: the spec is another task's.
  """
  if not isinstance(spec, dict):
    raise CheckpointError(f'task.json holds a JSON {type(spec).__name__}, not an object.')
  if spec.get('task') != name:
    raise DataFileError(f'The saved task is {spec.get("task")!r}, not {name!r}.')
  if not isinstance(spec.get('sizes'), dict):
    raise CheckpointError(f'task.json: "sizes" must be an object; got {spec.get("sizes")!r}.')
  return dict(spec['sizes'])
