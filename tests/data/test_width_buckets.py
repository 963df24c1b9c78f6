"""Width buckets: a second trim axis (characters per word), one width per compiled call."""

import numpy as np
import pytest

from bilstm_jax.data import batching

BATCH = 4


def _data(n=101, seed=0):
  """Lengths in [1, 30] and widths in [2, 20], most of them short (as words are)."""
  rng = np.random.default_rng(seed)
  return rng.integers(1, 31, n), np.minimum(20, 1 + rng.geometric(0.3, n))


def _plan(lengths, widths, wb, **kwargs):
  buckets = batching.Buckets.from_lengths(lengths, 3)
  args = dict(seed=1, epoch=2, buckets=buckets, widths=widths, width_buckets=wb)
  return batching.epoch_plan(lengths, BATCH, **{**args, **kwargs})


@pytest.mark.parametrize('steps_per_call', [0, 1, 2])
def test_widths_are_one_per_call_hold_every_row_and_come_from_the_buckets(steps_per_call):
  lengths, widths = _data()
  wb = batching.Buckets.from_lengths(widths, 3)
  assert len(wb.boundaries) == 3 and wb.boundaries[-1] == widths.max()
  plan = _plan(lengths, widths, wb, steps_per_call=steps_per_call)
  assert len(plan.widths) == len(plan) and set(plan.widths) <= set(wb.boundaries)
  trimmed = 0
  for lo, hi in plan.chunks:
    rows = plan.indices[lo:hi]
    widest = widths[rows[rows >= 0]].max()
    (w,) = set(plan.widths[lo:hi])  # one width for the whole call
    assert widest <= w  # every row fits
    # The smallest bucket that fits the call's widest row.
    assert w == min(b for b in wb.boundaries if b >= widest)
    trimmed += w < widths.max()
  if steps_per_call == 1:  # some call runs narrower than the data: not vacuous
    assert trimmed
  # Width does not choose the batches: the plan without width buckets holds the same.
  plain = _plan(lengths, None, None, steps_per_call=steps_per_call)
  np.testing.assert_array_equal(plan.indices, plain.indices)
  assert plan.times == plain.times and plan.chunks == plain.chunks and plain.widths is None
  assert [t for t, _ in plan.shapes()] == list(plan.times)


def test_widths_are_a_pure_function_of_the_data_seed_and_epoch():
  lengths, widths = _data()
  wb = batching.Buckets.from_lengths(widths, 3)
  a, b = _plan(lengths, widths, wb), _plan(lengths, widths, wb)
  np.testing.assert_array_equal(a.indices, b.indices)
  assert a.widths == b.widths and a.chunks == b.chunks
  other = _plan(lengths, widths, wb, epoch=3)
  assert other.widths != a.widths or not np.array_equal(other.indices, a.indices)


def test_the_members_plans_share_the_widest_width_of_each_call():
  lengths, widths = _data()
  wb = batching.Buckets.from_lengths(widths, 4)
  plans = [_plan(lengths, widths, wb, seed=s, call_seed=7, steps_per_call=1) for s in (0, 1, 2)]
  shared = batching.common_widths(plans)
  assert len({p.widths for p in shared}) == 1
  for i, w in enumerate(shared[0].widths):
    assert w == max(p.widths[i] for p in plans)
  assert any(len({p.widths[i] for p in plans}) > 1 for i in range(len(plans[0])))
  for before, after in zip(plans, shared, strict=True):
    np.testing.assert_array_equal(before.indices, after.indices)
  # Any plan at the full width (None) makes the call full width for every member.
  full = [plans[0], batching.EpochPlan(plans[1].indices, plans[1].times, plans[1].chunks)]
  full[1] = batching.fit_widths(full[1], widths, batching.Buckets((1,)))
  assert set(full[1].widths) == {None}
  assert set(batching.common_widths(full)[0].widths) == {None}
  assert batching.common_widths([]) == []


def test_eval_plan_gives_each_batch_its_own_width_and_the_full_one_beyond_the_buckets():
  rng = np.random.default_rng(2)
  lengths, widths = rng.integers(1, 31, 37), rng.integers(1, 21, 37)
  wb = batching.Buckets((4, 9, 15))  # fitted on narrower training data: 16..20 are wider
  for buckets in (None, batching.Buckets.from_lengths(lengths, 3)):
    plan = batching.eval_plan(lengths, 2, buckets, widths, wb)
    plain = batching.eval_plan(lengths, 2, buckets)
    np.testing.assert_array_equal(plan.indices, plain.indices)
    assert plan.times == plain.times
    for row, w in zip(plan.indices, plan.widths, strict=True):
      widest = widths[row[row >= 0]].max()
      assert w == (None if widest > 15 else min(b for b in wb.boundaries if b >= widest))
    assert None in plan.widths and len(set(plan.widths)) > 2


def test_gather_cuts_and_pads_the_width_keys_only():
  rng = np.random.default_rng(0)
  data = {
    'inputs': rng.integers(1, 9, (5, 6)).astype(np.int32),
    'chars': rng.integers(1, 9, (5, 6, 7)).astype(np.int32),
    'other': rng.random((5, 6, 7)).astype(np.float32),  # axis 2 not a width axis
    'lengths': np.full(5, 6, np.int32),
  }
  keys = ('inputs', 'chars', 'other')
  cut = batching.gather(data, np.array([3, -1]), 4, keys, 5, ('chars',))
  assert cut['chars'].shape == (2, 4, 5) and cut['other'].shape == (2, 4, 7)
  np.testing.assert_array_equal(cut['chars'][0], data['chars'][3, :4, :5])
  assert not cut['chars'][1].any()
  wide = batching.gather(data, np.array([1]), None, keys, 9, ('chars',))
  assert wide['chars'].shape == (1, 6, 9)
  np.testing.assert_array_equal(wide['chars'][0, :, :7], data['chars'][1])
  assert not wide['chars'][0, :, 7:].any()
  same = batching.gather(data, np.array([1]), None, keys, None, ('chars',))
  np.testing.assert_array_equal(same['chars'], data['chars'][[1]])
  lengths = data['lengths']
  plan = batching.eval_plan(lengths, 2, None, np.array([1, 2, 3, 4, 5]), batching.Buckets((3, 7)))
  got = batching.plan_batches(data, plan, keys, ('chars',))
  assert [b['chars'].shape[2] for b in got] == [3, 7, 7]
