"""Batching of dataset dicts, with optional length buckets. Plain numpy: no JAX, no Flax.

A dataset is a dict of numpy arrays with a leading example axis and `lengths: int32[n]`
(real steps per example). Which other keys it holds is the task's business: `inputs`
float32[n, time, features] or int32[n, time], `targets`, `labels`, characters, frames...
Keys with a time axis (axis 1) are the task's `time_keys`; length buckets trim those.

An epoch is planned first (`epoch_plan`): which examples go in each batch, padded to
which length, and which consecutive batches share one compiled call. The plan is a pure
function of (seed, epoch), so a resumed run rebuilds exactly the batches it would have
seen. Padding rows (index -1) are length-0 examples that weigh nothing in any loss.

Length buckets (`Buckets`) bound the number of compiled shapes: every batch is padded to
one of a few bucket lengths instead of the longest sequence in the data. Each example
belongs to the bucket of its length; in an epoch, each bucket's examples (in the epoch's
shuffled order) fill batches, and a bucket's last partial batch carries over into the
next longer bucket. So every bucket holds the same number of batches in every epoch, and
so does every compiled call: the shapes a run compiles are fixed by the data alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np


def num_batches(size: int, batch_size: int, drop_remainder: bool) -> int:
  """Batches in an epoch of `size` examples; a partial last one counts unless dropped."""
  return size // batch_size if drop_remainder else -(-size // batch_size)


def epoch_order(size: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
  """The example order of one epoch: a pure function of (seed, epoch), so resumable."""
  if not shuffle:
    return np.arange(size)
  return np.random.default_rng([seed, 2, epoch]).permutation(size)


def default_time_keys(dataset: dict) -> tuple[str, ...]:
  """Keys whose axis 1 is the time axis: the arrays of rank >= 2 as long as `inputs`."""
  if 'inputs' not in dataset or np.ndim(dataset['inputs']) < 2:
    return ()
  time = dataset['inputs'].shape[1]
  return tuple(
    k for k, v in dataset.items() if k != 'lengths' and v.ndim >= 2 and v.shape[1] == time
  )


def gather(
  dataset: dict, idx: np.ndarray, time: int | None = None, time_keys: Sequence[str] = ()
) -> dict:
  """The examples `idx` of a dataset as a batch; index -1 is a zero (length-0) row.

  Args:
    dataset: the dataset dict.
    idx: int[batch] example indices, -1 for padding rows.
    time: if given, the `time_keys` arrays are cut (or zero-padded) to this many steps.
    time_keys: the keys with a time axis (axis 1).
  """
  idx = np.asarray(idx)
  real = idx >= 0
  safe = np.where(real, idx, 0)
  out = {}
  for k, v in dataset.items():
    x = v[safe]
    if time is not None and k in time_keys:
      if x.shape[1] >= time:
        x = x[:, :time]
      else:
        x = np.pad(x, [(0, 0), (0, time - x.shape[1])] + [(0, 0)] * (x.ndim - 2))
    if not real.all():
      x = np.where(real.reshape((-1,) + (1,) * (x.ndim - 1)), x, np.zeros((), x.dtype))
    out[k] = x
  return out


@dataclasses.dataclass(frozen=True)
class Buckets:
  """Bucket lengths: a batch of bucket k is padded to `boundaries[k]` steps.

  Attributes:
    boundaries: increasing lengths; the last covers the longest example.
  """

  boundaries: tuple[int, ...]

  @classmethod
  def from_lengths(cls, lengths: np.ndarray, num_buckets: int) -> Buckets:
    """The boundaries that pad the (training) lengths least, with at most `num_buckets`.

    Each example is padded to the smallest boundary that holds it; the boundaries are
    chosen among the lengths themselves to minimise the total padding, exactly, by dynamic
    programming over the distinct lengths. Quantiles would be simpler, but a long tail then
    pads a quarter of the examples (with 4 buckets) to the single longest one. Fewer
    buckets result when there are fewer distinct lengths. Boundaries are at least 1 step.
    """
    if num_buckets < 1:
      raise ValueError(f'num_buckets must be >= 1; got {num_buckets}.')
    values, counts = np.unique(np.maximum(np.asarray(lengths, np.int64), 1), return_counts=True)
    if values.size <= num_buckets:
      return cls(tuple(int(v) for v in values) or (1,))
    return cls(tuple(int(values[j]) for j in _least_padding(values, counts, num_buckets)))

  def of(self, lengths: np.ndarray) -> np.ndarray:
    """int[n]: each length's bucket (lengths beyond the last boundary go in the last)."""
    b = np.searchsorted(np.asarray(self.boundaries), np.asarray(lengths), side='left')
    return np.minimum(b, len(self.boundaries) - 1)

  def fit(self, max_length: int) -> int:
    """The smallest boundary that holds `max_length` steps (the last if none does)."""
    return self.boundaries[int(self.of(np.array([max_length]))[0])]


def _least_padding(values: np.ndarray, counts: np.ndarray, k: int) -> list[int]:
  """Indices into sorted distinct `values` of the <= k boundaries of least total padding.

  cost(i, j), the padding of the examples with values[i..j] in a bucket of values[j], is
  values[j] * n(i..j) - sum(i..j). best[m, j] is the least padding of values[0..j] in m
  buckets, the last ending at j; one vectorised minimum over i per (m, j).
  """
  n = np.concatenate([[0], np.cumsum(counts)])  # n[j + 1]: examples with values[0..j]
  total = np.concatenate([[0], np.cumsum(counts * values)])
  u = len(values)
  j_ = np.arange(u)
  best = np.full((k + 1, u), np.inf)
  best[1] = values * n[1:] - total[1:]
  prev = np.zeros((k + 1, u), np.int64)
  for m in range(2, k + 1):
    for j in range(m - 1, u):
      i = j_[1 : j + 1]  # the last bucket holds values[i..j]; the others end at i - 1
      cand = best[m - 1, i - 1] + values[j] * (n[j + 1] - n[i]) - (total[j + 1] - total[i])
      a = int(np.argmin(cand))
      best[m, j], prev[m, j] = cand[a], i[a]
  m, j, out = k, u - 1, []
  while m >= 1:
    out.append(j)
    if m == 1:
      break
    j, m = prev[m, j] - 1, m - 1
  return sorted(out)


@dataclasses.dataclass(frozen=True)
class EpochPlan:
  """The batches of one epoch and how they group into compiled calls.

  Attributes:
    indices: int[batches, batch_size] example indices (-1: padding row).
    times: each batch's padded length, or None for the data's full length.
    chunks: (lo, hi) batch ranges of consecutive calls; batches in one chunk share a shape.
  """

  indices: np.ndarray
  times: tuple[int | None, ...]
  chunks: tuple[tuple[int, int], ...]

  def __len__(self) -> int:
    return len(self.indices)


def _chunks(sizes: Sequence[int], steps_per_call: int) -> list[tuple[int, int]]:
  """Ranges of at most `steps_per_call` (0: all) batches inside each group of `sizes`."""
  out, lo = [], 0
  for size in sizes:
    step = size if steps_per_call <= 0 else steps_per_call
    out += [(s, min(s + step, lo + size)) for s in range(lo, lo + size, max(step, 1))]
    lo += size
  return out


def epoch_plan(
  lengths: np.ndarray,
  batch_size: int,
  *,
  seed: int = 0,
  epoch: int = 0,
  shuffle: bool = True,
  drop_remainder: bool = True,
  steps_per_call: int = 0,
  buckets: Buckets | None = None,
  call_seed: int | None = None,
) -> EpochPlan:
  """Plans one epoch: a pure function of its arguments.

  Without buckets: batches in the epoch's order, every one at the data's full length, the
  calls `steps_per_call` batches each (0: the whole epoch in one). A short last batch
  (drop_remainder=False) is padded with -1 rows.

  With buckets: see the module docstring. Calls group up to `steps_per_call` batches of
  one bucket; with `shuffle` the calls run in an order drawn from (call_seed, epoch),
  call_seed defaulting to seed. The bucket of every call depends on the lengths and
  call_seed alone, so plans of one data with different seeds and one call_seed fill the
  same shapes in the same order with different examples (an ensemble's 'shuffled' members).
  """
  lengths = np.asarray(lengths)
  size = len(lengths)
  order = epoch_order(size, seed, epoch, shuffle)
  if buckets is None:
    n = num_batches(size, batch_size, drop_remainder)
    idx = np.full((n * batch_size,), -1, np.int64)
    take = order[: n * batch_size]
    idx[: len(take)] = take
    return EpochPlan(
      idx.reshape(n, batch_size), (None,) * n, tuple(_chunks([n] if n else [], steps_per_call))
    )
  which = buckets.of(lengths[order])
  groups, carry = [], np.zeros((0,), np.int64)
  for k, bound in enumerate(buckets.boundaries):
    pool = np.concatenate([carry, order[which == k]])
    full = len(pool) // batch_size * batch_size
    carry = pool[full:]
    if len(buckets.boundaries) - 1 == k and len(carry) and not drop_remainder:
      pad = np.full((batch_size - len(carry),), -1, np.int64)
      pool, full, carry = np.concatenate([pool, pad]), len(pool) + len(pad), carry[:0]
    batches = pool[:full].reshape(-1, batch_size)
    step = len(batches) if steps_per_call <= 0 else steps_per_call
    groups += [(batches[s : s + step], bound) for s in range(0, len(batches), max(step, 1))]
  if shuffle:
    call_seed = seed if call_seed is None else call_seed
    perm = np.random.default_rng([call_seed, 5, epoch]).permutation(len(groups))
    groups = [groups[i] for i in perm]
  if not groups:
    return EpochPlan(np.zeros((0, batch_size), np.int64), (), ())
  indices = np.concatenate([g for g, _ in groups])
  times = tuple(t for g, t in groups for _ in range(len(g)))
  return EpochPlan(indices, times, tuple(_chunks([len(g) for g, _ in groups], 0)))


def eval_plan(lengths: np.ndarray, batch_size: int, buckets: Buckets | None = None) -> EpochPlan:
  """Every example once, for evaluation; the last batch padded with -1 rows.

  With buckets the examples go in order of length, so each batch is padded to the
  smallest bucket that holds it (the sums a task computes do not depend on the order);
  a batch longer than every bucket (data longer than any training example) runs at the
  data's full length.
  """
  lengths = np.asarray(lengths)
  if buckets is None:
    return epoch_plan(lengths, batch_size, shuffle=False, drop_remainder=False)
  order = np.argsort(lengths, kind='stable')
  n = num_batches(len(order), batch_size, False)
  idx = np.full((n * batch_size,), -1, np.int64)
  idx[: len(order)] = order
  idx = idx.reshape(n, batch_size)
  longest = [int(lengths[row[row >= 0]].max(initial=0)) for row in idx]
  # Beyond the last bucket (data longer than any training example): the full length.
  times = tuple(t if (t := buckets.fit(m)) >= m else None for m in longest)
  return EpochPlan(idx, times, tuple((i, i + 1) for i in range(n)))


def plan_batches(dataset: dict, plan: EpochPlan, time_keys: Sequence[str] | None = None) -> list:
  """The batches of a plan (whole batches; see `parallel.sharding` for per-process rows)."""
  keys = default_time_keys(dataset) if time_keys is None else time_keys
  return [gather(dataset, i, t, keys) for i, t in zip(plan.indices, plan.times, strict=True)]


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
  """Yields the batches of one epoch at full length, starting at batch index `start`.

  A short last batch (drop_remainder=False) is padded to `batch_size` with length-0
  examples, so every batch has one shape and padded examples weigh nothing in the loss.
  """
  plan = epoch_plan(
    dataset['lengths'],
    batch_size,
    seed=seed,
    epoch=epoch,
    shuffle=shuffle,
    drop_remainder=drop_remainder,
  )
  for idx in plan.indices[start:]:
    yield gather(dataset, idx)


def stack(batch_list: list[dict]) -> dict:
  """Stacks batches on a new leading axis (for several steps in one compiled call)."""
  return {k: np.stack([b[k] for b in batch_list]) for k in batch_list[0]}


def padding_stats(plan: EpochPlan, lengths: np.ndarray, full_time: int) -> dict:
  """Steps computed and real steps of a plan's batches: what bucketing saves.

  Returns:
    {'real_steps', 'padded_steps', 'full_length_steps', 'padding_fraction'}: real steps,
    steps computed with the plan's padding, steps computed at the data's full length, and
    the fraction of computed steps that are padding.
  """
  lengths = np.asarray(lengths)
  real = padded = full = 0
  for idx, t in zip(plan.indices, plan.times, strict=True):
    rows = idx[idx >= 0]
    real += int(lengths[rows].sum())
    padded += len(idx) * (full_time if t is None else t)
    full += len(idx) * full_time
  return {
    'real_steps': real,
    'padded_steps': padded,
    'full_length_steps': full,
    'padding_fraction': 1.0 - real / padded if padded else 0.0,
  }
