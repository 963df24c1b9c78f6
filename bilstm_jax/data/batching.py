"""Synthetic sequence data and batching. Plain numpy: knows nothing about JAX or Flax.

A dataset is a dict of numpy arrays with a leading example axis:
  inputs:  float32[n, time, features]
  lengths: int32[n]                      real steps per sequence (the rest is padding)
  targets: float32[n, time, outputs]     (regression tasks)

Tasks:
  seed_noise:   the PyTorch tutorial's data exactly: X ~ N(0, 1) of shape [16, 10, 5] and
                y ~ N(0, 1) of shape [16, 10, 1]. Nothing to learn; a memorisation task.
  bidir_window: y[t] = 0.6 * x[t - 1, 0] + 0.8 * x[t + 1, 1] (x is zero outside the
                sequence). The target depends on the step before and the step after t, so
                a forward-only LSTM can explain at most the first term (it must guess the
                0.8 * x[t + 1, 1] part: MSE >= 0.64 of the variance), while a bidirectional
                one can learn it exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

TASK_DEFAULT_SIZES = {'seed_noise': 16, 'bidir_window': 256}


def seed_noise(num: int, seq_len: int, input_size: int, output_size: int, rng) -> dict:
  """The tutorial's generator: random inputs and random targets of the same length."""
  return {
    'inputs': rng.standard_normal((num, seq_len, input_size), dtype=np.float32),
    'lengths': np.full((num,), seq_len, np.int32),
    'targets': rng.standard_normal((num, seq_len, output_size), dtype=np.float32),
  }


def bidir_window(
  num: int, seq_len: int, input_size: int, output_size: int, rng, min_length: int | None = None
) -> dict:
  """y[t] = 0.6 x[t-1, 0] + 0.8 x[t+1, 1], a target that needs both directions.

  With `min_length`, lengths are drawn uniformly from [min_length, seq_len]; steps past a
  sequence's length are padding (inputs and targets zero there) and x is taken as zero
  past the end, so the task is well defined for every length.
  """
  if input_size < 2:
    raise ValueError(f'bidir_window needs input_size >= 2; got {input_size}.')
  x = rng.standard_normal((num, seq_len, input_size), dtype=np.float32)
  if min_length is None:
    lengths = np.full((num,), seq_len, np.int32)
  else:
    lengths = rng.integers(min_length, seq_len + 1, size=num).astype(np.int32)
  valid = np.arange(seq_len)[None, :] < lengths[:, None]
  x *= valid[..., None]
  prev = np.pad(x[:, :-1, 0], ((0, 0), (1, 0)))
  nxt = np.pad(x[:, 1:, 1], ((0, 0), (0, 1)))
  y = (0.6 * prev + 0.8 * nxt) * valid
  targets = np.repeat(y[..., None], output_size, axis=-1).astype(np.float32)
  return {'inputs': x, 'lengths': lengths, 'targets': targets}


_GENERATORS = {'seed_noise': seed_noise, 'bidir_window': bidir_window}


def synthetic(config, split: str) -> dict:
  """Builds the synthetic `split` ('train' or 'dev') described by a data config.

  The dev split uses a different seed from the train split, so it is fresh data.
  """
  if config.task not in _GENERATORS:
    raise ValueError(f'Unknown synthetic task {config.task!r}; known: {sorted(_GENERATORS)}.')
  if split not in ('train', 'dev'):
    raise ValueError(f"Unknown split {split!r}; expected 'train' or 'dev'.")
  num = config.num_train if split == 'train' else config.num_dev
  if num is None:
    num = TASK_DEFAULT_SIZES[config.task]
  rng = np.random.default_rng([config.seed, 0 if split == 'train' else 1])
  kwargs = {}
  if config.task == 'bidir_window':
    kwargs['min_length'] = config.get('min_length')
  return _GENERATORS[config.task](
    num, config.seq_len, config.input_size, config.output_size, rng, **kwargs
  )


def check_batch(batch: dict, input_size: int | None = None) -> None:
  """Host-side validation of a batch before it reaches a jitted step.

  Raises:
    ValueError / TypeError naming the problem: rank, dtype, feature size, lengths outside
    [0, time], mismatched batch sizes, NaN or inf in inputs or targets.
  """
  x = np.asarray(batch['inputs'])
  if x.ndim != 3:
    raise ValueError(f'inputs must be [batch, time, features]; got shape {x.shape}.')
  if not np.issubdtype(x.dtype, np.floating):
    raise TypeError(f'inputs must be floating point; got {x.dtype}.')
  if input_size is not None and x.shape[-1] != input_size:
    raise ValueError(f'inputs have {x.shape[-1]} features; the model expects {input_size}.')
  n, t = x.shape[:2]
  lengths = np.asarray(batch['lengths'])
  if not np.issubdtype(lengths.dtype, np.integer):
    raise TypeError(f'lengths must be integers; got {lengths.dtype}.')
  if lengths.shape != (n,):
    raise ValueError(f'lengths must have shape ({n},); got {lengths.shape}.')
  if n and (lengths.min() < 0 or lengths.max() > t):
    i = int(np.argmax((lengths < 0) | (lengths > t)))
    raise ValueError(f'lengths must lie in [0, {t}] (the time axis); example {i} has {lengths[i]}.')
  for key in ('inputs', 'targets'):
    if key in batch and np.issubdtype(np.asarray(batch[key]).dtype, np.floating):
      bad = ~np.isfinite(batch[key])
      if bad.any():
        raise ValueError(
          f'{key} contain NaN or inf (first at index {np.argwhere(bad)[0].tolist()}).'
        )
  if 'targets' in batch and len(batch['targets']) != n:
    raise ValueError(f'targets have {len(batch["targets"])} examples; inputs have {n}.')


def num_batches(size: int, batch_size: int, drop_remainder: bool) -> int:
  return size // batch_size if drop_remainder else -(-size // batch_size)


def epoch_order(size: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
  """The example order of one epoch: a pure function of (seed, epoch), so resumable."""
  if not shuffle:
    return np.arange(size)
  return np.random.default_rng([seed, 2, epoch]).permutation(size)


def batches(
  dataset: dict,
  batch_size: int,
  *,
  seed: int = 0,
  epoch: int = 0,
  shuffle: bool = True,
  drop_remainder: bool = True,
  start: int = 0,
) -> Iterator[dict]:
  """Yields the batches of one epoch, starting at batch index `start`.

  A short last batch (drop_remainder=False) is padded to `batch_size` with length-0
  examples, so every batch has one shape and padded examples weigh nothing in the loss.
  """
  size = len(dataset['lengths'])
  order = epoch_order(size, seed, epoch, shuffle)
  for b in range(start, num_batches(size, batch_size, drop_remainder)):
    idx = order[b * batch_size : (b + 1) * batch_size]
    batch = {k: v[idx] for k, v in dataset.items()}
    pad = batch_size - len(idx)
    if pad:
      batch = {
        k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in batch.items()
      }
    yield batch


def stack(batch_list: list[dict]) -> dict:
  """Stacks batches on a new leading axis (for several steps in one compiled call)."""
  return {k: np.stack([b[k] for b in batch_list]) for k in batch_list[0]}
