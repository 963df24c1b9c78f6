"""Batching of dataset dicts, with optional length buckets. Plain numpy: no JAX, no Flax.

A dataset is a dict of numpy arrays with a leading example axis and `lengths: int32[n]`
(real steps per example). Which other keys it holds is the task's business: `inputs`
float32[n, time, features] or int32[n, time], `targets`, `labels`, characters, frames...
Keys with a time axis (axis 1) are the task's `time_keys`; length buckets trim those.
Keys with a width axis (axis 2: the characters of each word) are its `width_keys`; width
buckets trim those.

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

Width buckets are a second axis (`Buckets` too, fitted on the examples' widths, such as a
sentence's longest word): the plan gives every batch of one compiled call the smallest
width bucket that holds the widest example among all the call's rows (`fit_widths`), so
a run compiles at most (length buckets) x (width buckets) shapes. Width does not choose
the batches, so a plan with width buckets holds the same batches as one without.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from bilstm_jax.data.buckets import Buckets


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
  dataset: dict,
  idx: np.ndarray,
  time: int | None = None,
  time_keys: Sequence[str] = (),
  width: int | None = None,
  width_keys: Sequence[str] = (),
) -> dict:
  """The examples `idx` of a dataset as a batch; index -1 is a zero (length-0) row.

  Args:
    dataset: the dataset dict.
    idx: int[batch] example indices, -1 for padding rows.
    time: if given, the `time_keys` arrays are cut (or zero-padded) to this many steps.
    time_keys: the keys with a time axis (axis 1).
    width: if given, the `width_keys` arrays are cut (or zero-padded) to this size on
      axis 2, e.g. `chars` int32[n, time, width] to this many characters per word.
    width_keys: the keys with a width axis (axis 2).
  """
  idx = np.asarray(idx)
  real = idx >= 0
  safe = np.where(real, idx, 0)
  out = {}
  for k, v in dataset.items():
    x = v[safe]
    if time is not None and k in time_keys:
      x = _fit_axis(x, 1, time)
    if width is not None and k in width_keys:
      x = _fit_axis(x, 2, width)
    if not real.all():
      x = np.where(real.reshape((-1,) + (1,) * (x.ndim - 1)), x, np.zeros((), x.dtype))
    out[k] = x
  return out


def _fit_axis(x: np.ndarray, axis: int, size: int) -> np.ndarray:
  """`x` cut, or zero-padded at the end, to `size` along `axis`."""
  if x.shape[axis] >= size:
    return x[(slice(None),) * axis + (slice(0, size),)]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, size - x.shape[axis])
  return np.pad(x, pad)


@dataclasses.dataclass(frozen=True)
class EpochPlan:
  """The batches of one epoch and how they group into compiled calls.

  Attributes:
    indices: int[batches, batch_size] example indices (-1: padding row).
    times: each batch's padded length, or None for the data's full length.
    chunks: (lo, hi) batch ranges of consecutive calls; batches in one chunk share a shape.
    widths: each batch's width (`fit_widths`), None in it for the data's full width; or
      None: every batch at the full width (no width buckets).
  """

  indices: np.ndarray
  times: tuple[int | None, ...]
  chunks: tuple[tuple[int, int], ...]
  widths: tuple[int | None, ...] | None = None

  def __len__(self) -> int:
    return len(self.indices)

  def shapes(self) -> list[tuple[int | None, int | None]]:
    """Each batch's (time, width); None: the data's full length or width."""
    widths = (None,) * len(self.times) if self.widths is None else self.widths
    return list(zip(self.times, widths, strict=True))


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
  widths: np.ndarray | None = None,
  width_buckets: Buckets | None = None,
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

  With `width_buckets` (and `widths`, int[n]: each example's width) every batch gets the
  width of its call (`fit_widths`); the batches and calls are those of the plan without.
  """
  plan = _epoch_plan(
    lengths, batch_size, seed, epoch, shuffle, drop_remainder, steps_per_call, buckets, call_seed
  )
  if width_buckets is None:
    return plan
  return fit_widths(plan, widths, width_buckets)


def _epoch_plan(
  lengths, batch_size, seed, epoch, shuffle, drop_remainder, steps_per_call, buckets, call_seed
) -> EpochPlan:
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


def eval_plan(
  lengths: np.ndarray,
  batch_size: int,
  buckets: Buckets | None = None,
  widths: np.ndarray | None = None,
  width_buckets: Buckets | None = None,
) -> EpochPlan:
  """Every example once, for evaluation; the last batch padded with -1 rows.

  With buckets the examples go in order of length, so each batch is padded to the
  smallest bucket that holds it (the sums a task computes do not depend on the order);
  a batch longer than every bucket (data longer than any training example) runs at the
  data's full length. With `width_buckets` (and `widths`, int[n]) each batch likewise
  gets the smallest width bucket that holds its own widest example, or the full width.
  """
  lengths = np.asarray(lengths)
  if buckets is None:
    plan = epoch_plan(lengths, batch_size, shuffle=False, drop_remainder=False)
  else:
    order = np.argsort(lengths, kind='stable')
    n = num_batches(len(order), batch_size, False)
    idx = np.full((n * batch_size,), -1, np.int64)
    idx[: len(order)] = order
    idx = idx.reshape(n, batch_size)
    longest = [int(lengths[row[row >= 0]].max(initial=0)) for row in idx]
    # Beyond the last bucket (data longer than any training example): the full length.
    times = tuple(t if (t := buckets.fit(m)) >= m else None for m in longest)
    plan = EpochPlan(idx, times, tuple((i, i + 1) for i in range(n)))
  if width_buckets is None:
    return plan
  return fit_widths(plan, widths, width_buckets, [(i, i + 1) for i in range(len(plan))])


def fit_widths(
  plan: EpochPlan,
  widths: np.ndarray,
  width_buckets: Buckets,
  ranges: Sequence[tuple[int, int]] | None = None,
) -> EpochPlan:
  """The plan with a width for every batch, one for all the batches of each call.

  A call's width is the smallest of `width_buckets` that holds the widest of its real rows,
  so no row loses anything; wider than every bucket (data wider than any training
  example), the call runs at the data's full width (None).

  Args:
    plan: the plan.
    widths: int[n], each example's width (`Task.example_widths`).
    width_buckets: the width boundaries (fitted on the training widths).
    ranges: (lo, hi) batch ranges that share a width; default the plan's `chunks`.
  """
  widths = np.asarray(widths)
  out: list[int | None] = [None] * len(plan)
  for lo, hi in plan.chunks if ranges is None else ranges:
    rows = plan.indices[lo:hi]
    widest = int(widths[rows[rows >= 0]].max(initial=0))
    w = width_buckets.fit(widest)
    out[lo:hi] = [w if w >= widest else None] * (hi - lo)
  return dataclasses.replace(plan, widths=tuple(out))


def common_widths(plans: Sequence[EpochPlan]) -> list[EpochPlan]:
  """Plans of one shape of calls (an ensemble's members), each batch at the widest of the
  plans' widths for it (None, the full width, if any is), so stacked batches share one
  shape."""
  if not plans or plans[0].widths is None:
    return list(plans)
  each = zip(*(p.widths for p in plans), strict=True)
  shared = tuple(None if None in ws else max(ws) for ws in each)
  return [dataclasses.replace(p, widths=shared) for p in plans]


def plan_batches(
  dataset: dict,
  plan: EpochPlan,
  time_keys: Sequence[str] | None = None,
  width_keys: Sequence[str] = (),
) -> list:
  """The batches of a plan (whole batches; see `parallel.sharding` for per-process rows)."""
  keys = default_time_keys(dataset) if time_keys is None else time_keys
  pairs = zip(plan.indices, plan.shapes(), strict=True)
  return [gather(dataset, i, t, keys, w, width_keys) for i, (t, w) in pairs]


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
