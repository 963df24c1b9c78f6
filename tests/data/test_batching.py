"""Epoch plans, length buckets and gathering: exact, resumable, bounded in shapes."""

import numpy as np
import pytest

from bilstm_jax.data import batching


def _lengths(n=203, seed=0, low=1, high=40):
  return np.random.default_rng(seed).integers(low, high + 1, n)


def test_full_length_plan_matches_the_shuffled_order_and_pads_the_last_batch():
  lengths = _lengths(10)
  plan = batching.epoch_plan(lengths, 4, seed=3, epoch=2, drop_remainder=False, steps_per_call=2)
  order = batching.epoch_order(10, 3, 2, True)
  assert plan.indices.tolist() == [order[:4].tolist(), order[4:8].tolist(), [*order[8:], -1, -1]]
  assert plan.times == (None, None, None)
  assert plan.chunks == ((0, 2), (2, 3))


@pytest.mark.parametrize('steps_per_call', [0, 1, 3])
def test_bucketed_plans_use_every_example_once_and_fit_each_batch(steps_per_call):
  lengths = _lengths()
  buckets = batching.Buckets.from_lengths(lengths, 4)
  assert len(buckets.boundaries) == 4 and buckets.boundaries[-1] == lengths.max()
  counts = set()
  for epoch in (1, 2, 3):
    plan = batching.epoch_plan(
      lengths, 8, seed=0, epoch=epoch, steps_per_call=steps_per_call, buckets=buckets
    )
    used = plan.indices[plan.indices >= 0]
    assert len(np.unique(used)) == len(used)  # no example twice
    assert len(used) == len(lengths) // 8 * 8  # only the last remainder is dropped
    for idx, t in zip(plan.indices, plan.times, strict=True):
      assert t in buckets.boundaries and lengths[idx].max() <= t
    for lo, hi in plan.chunks:  # a call holds batches of one shape
      assert len(set(plan.times[lo:hi])) == 1
      assert steps_per_call == 0 or hi - lo <= steps_per_call
    assert plan.chunks[0][0] == 0 and plan.chunks[-1][1] == len(plan)
    # The calls' shapes do not depend on the epoch: a fixed set of compiled programs.
    counts.add(tuple(sorted((plan.times[lo], hi - lo) for lo, hi in plan.chunks)))
  assert len(counts) == 1, counts


def test_bucketed_plans_are_a_pure_function_of_seed_and_epoch():
  lengths = _lengths()
  buckets = batching.Buckets.from_lengths(lengths, 3)
  a = batching.epoch_plan(lengths, 8, seed=1, epoch=4, buckets=buckets, steps_per_call=2)
  b = batching.epoch_plan(lengths, 8, seed=1, epoch=4, buckets=buckets, steps_per_call=2)
  c = batching.epoch_plan(lengths, 8, seed=1, epoch=5, buckets=buckets, steps_per_call=2)
  np.testing.assert_array_equal(a.indices, b.indices)
  assert a.times == b.times and a.chunks == b.chunks
  assert not np.array_equal(a.indices, c.indices)


def test_buckets_save_padding_on_ragged_data():
  lengths = _lengths(1000, high=100)
  plain = batching.epoch_plan(lengths, 16, seed=0, epoch=1)
  bucketed = batching.epoch_plan(
    lengths, 16, seed=0, epoch=1, buckets=batching.Buckets.from_lengths(lengths, 4)
  )
  full = batching.padding_stats(plain, lengths, 100)
  saved = batching.padding_stats(bucketed, lengths, 100)
  assert full['padding_fraction'] > 0.45  # uniform lengths: about half is padding
  assert saved['padding_fraction'] < 0.25
  assert saved['padded_steps'] < 0.65 * full['padded_steps']


def test_eval_plan_covers_every_example_in_bounded_shapes():
  lengths = _lengths(37)
  buckets = batching.Buckets.from_lengths(lengths, 3)
  plan = batching.eval_plan(lengths, 8, buckets)
  assert sorted(plan.indices[plan.indices >= 0].tolist()) == list(range(37))
  assert set(plan.times) <= set(buckets.boundaries)
  # Dev data longer than any training example is never cut to the last bucket.
  longer = np.concatenate([lengths, [lengths.max() + 5]])
  plan = batching.eval_plan(longer, 8, buckets)
  assert plan.times[-1] is None and plan.times[0] in buckets.boundaries


def test_gather_cuts_time_keys_and_zeroes_padding_rows():
  data = {
    'inputs': np.arange(3 * 5 * 2, dtype=np.float32).reshape(3, 5, 2) + 1,
    'lengths': np.array([5, 2, 3], np.int32),
    'labels': np.array([1, 2, 3], np.int32),
  }
  batch = batching.gather(data, np.array([2, -1, 0]), time=3, time_keys=('inputs',))
  assert batch['inputs'].shape == (3, 3, 2) and batch['labels'].tolist() == [3, 0, 1]
  assert batch['lengths'].tolist() == [3, 0, 5]
  np.testing.assert_array_equal(batch['inputs'][0], data['inputs'][2, :3])
  assert not batch['inputs'][1].any()
  padded = batching.gather(data, np.array([1]), time=7, time_keys=('inputs',))
  assert padded['inputs'].shape == (1, 7, 2) and not padded['inputs'][0, 5:].any()
