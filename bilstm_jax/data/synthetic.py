"""Synthetic sequence tasks, as dataset dicts of numpy arrays (no JAX, no Flax).

seed_noise:   the PyTorch tutorial's data exactly: X ~ N(0, 1) of shape [16, 10, 5] and
              y ~ N(0, 1) of shape [16, 10, 1]. Nothing to learn; a memorisation task.
bidir_window: y[t] = 0.6 * x[t - 1, 0] + 0.8 * x[t + 1, 1] (x is zero outside the
              sequence). The target depends on the step before and the step after t, so
              a forward-only LSTM can explain at most the first term (it must guess the
              0.8 * x[t + 1, 1] part: MSE >= 0.64 of the variance), while a bidirectional
              one can learn it exactly.
"""

from __future__ import annotations

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


GENERATORS = {'seed_noise': seed_noise, 'bidir_window': bidir_window}


def generate(
  name: str,
  split: str,
  *,
  num: int | None,
  seq_len: int,
  input_size: int,
  output_size: int,
  seed: int,
  min_length: int | None = None,
) -> dict:
  """The synthetic `split` ('train' or 'dev') of task `name`: a pure function of the seed.

  The dev split uses a different seed from the train split, so it is fresh data. `num`
  None gives the task's own size (`TASK_DEFAULT_SIZES`).
  """
  if name not in GENERATORS:
    raise ValueError(f'Unknown synthetic task {name!r}; known: {sorted(GENERATORS)}.')
  if split not in ('train', 'dev'):
    raise ValueError(f"Unknown split {split!r} of a synthetic task; expected 'train' or 'dev'.")
  num = TASK_DEFAULT_SIZES[name] if num is None else num
  rng = np.random.default_rng([seed, 0 if split == 'train' else 1])
  kwargs = {'min_length': min_length} if name == 'bidir_window' else {}
  return GENERATORS[name](num, seq_len, input_size, output_size, rng, **kwargs)
