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


def test_plans_sharing_a_call_seed_fill_the_same_shapes_with_their_own_examples():
  """What a 'shuffled' ensemble stacks: member seeds differ, the call order does not."""
  lengths = _lengths()
  buckets = batching.Buckets.from_lengths(lengths, 4)
  kwargs = dict(epoch=3, buckets=buckets, steps_per_call=2)
  plans = [batching.epoch_plan(lengths, 8, seed=s, call_seed=7, **kwargs) for s in (7, 8, 9)]
  own = batching.epoch_plan(lengths, 8, seed=7, **kwargs)
  np.testing.assert_array_equal(plans[0].indices, own.indices)  # call_seed defaults to seed
  for plan in plans[1:]:
    assert plan.times == plans[0].times and plan.chunks == plans[0].chunks
    assert (plan.indices != plans[0].indices).mean() > 0.9
    for idx, t in zip(plan.indices, plan.times, strict=True):
      assert lengths[idx].max() <= t
  # Its own seed alone would also reorder the calls.
  assert batching.epoch_plan(lengths, 8, seed=8, **kwargs).times != plans[0].times


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


def test_padding_stats_by_hand():
  plan = batching.EpochPlan(np.array([[0, 1], [2, -1]]), (3, None), ((0, 2),))
  stats = batching.padding_stats(plan, np.array([2, 3, 1]), 5)
  # Real steps 2 + 3 + 1; computed 2 rows x 3 steps + 2 rows x 5; full length 4 rows x 5.
  assert stats == {
    'real_steps': 6,
    'padded_steps': 16,
    'full_length_steps': 20,
    'padding_fraction': 1.0 - 6 / 16,
  }
  empty = batching.EpochPlan(np.zeros((0, 2), np.int64), (), ())
  assert batching.padding_stats(empty, np.array([2]), 5)['padding_fraction'] == 0.0


def test_plans_without_buckets_by_hand():
  lengths = _lengths(10)
  plan = batching.eval_plan(lengths, 4)
  assert plan.indices.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, -1, -1]]
  assert plan.times == (None,) * 3 and plan.indices.dtype == np.int64
  # The training defaults: shuffled by (seed 0, epoch 0), the short last batch dropped.
  plan = batching.epoch_plan(lengths, 4)
  order = np.random.default_rng([0, 2, 0]).permutation(10)
  assert plan.indices.tolist() == [order[:4].tolist(), order[4:8].tolist()]
  assert plan.chunks == ((0, 2),) and plan.indices.dtype == np.int64


def test_bucketed_plan_pads_only_the_last_bucket_when_keeping_the_remainder():
  lengths = _lengths(37)
  buckets = batching.Buckets.from_lengths(lengths, 3)
  plan = batching.epoch_plan(lengths, 8, seed=2, epoch=1, buckets=buckets, drop_remainder=False)
  assert plan.indices.dtype == np.int64 and plan.indices.shape == (5, 8)
  used = plan.indices[plan.indices >= 0]
  assert sorted(used.tolist()) == list(range(37))
  assert (plan.indices[plan.indices < 0] == -1).sum() == 3  # 40 rows - 37 examples
  [padded] = [b for b, row in enumerate(plan.indices) if (row < 0).any()]
  assert plan.times[padded] == buckets.boundaries[-1]
  for idx, t in zip(plan.indices, plan.times, strict=True):
    assert lengths[idx[idx >= 0]].max() <= t
  empty = batching.epoch_plan(np.zeros(0, np.int64), 4, buckets=buckets)
  assert empty.indices.shape == (0, 4) and empty.indices.dtype == np.int64
  assert empty.times == () and empty.chunks == ()


def test_eval_plan_with_buckets_by_brute_force():
  rng = np.random.default_rng(4)
  lengths = rng.integers(1, 6, 100)  # many ties: the order must be the stable sort's
  lengths[0] = 9  # the longest is example 0, alone in the last batch
  buckets = batching.Buckets.from_lengths(lengths[1:], 3)
  plan = batching.eval_plan(lengths, 8, buckets)
  want = sorted(range(100), key=lambda i: (lengths[i], i))
  assert plan.indices.dtype == np.int64 and plan.indices.shape == (13, 8)
  assert plan.indices.ravel()[:100].tolist() == want
  assert plan.indices.ravel()[100:].tolist() == [-1] * 4
  assert plan.chunks == tuple((i, i + 1) for i in range(13))
  for row, t in zip(plan.indices, plan.times, strict=True):
    longest = lengths[row[row >= 0]].max()
    fits = [b for b in buckets.boundaries if b >= longest]
    assert t == (min(fits) if fits else None)
  assert plan.times[-1] is None  # example 0 (9 steps) is longer than every bucket


def test_buckets_from_lengths_edge_cases():
  assert batching.Buckets.from_lengths(np.array([3, 9, 5]), 1).boundaries == (9,)
  assert batching.Buckets.from_lengths(np.array([1, 1, 1]), 2).boundaries == (1,)
  assert batching.Buckets.from_lengths(np.zeros(0, np.int64), 3).boundaries == (1,)
  with pytest.raises(ValueError, match='num_buckets must be >= 1; got 0'):
    batching.Buckets.from_lengths(np.array([3]), 0)


def _dataset(n=11, time=5):
  rng = np.random.default_rng(5)
  return {
    'inputs': rng.normal(size=(n, time, 2)).astype(np.float32) + 3,
    'targets': rng.integers(1, 4, (n, time)).astype(np.int32),
    'lengths': rng.integers(1, time + 1, n).astype(np.int32),
    'labels': rng.integers(1, 4, n).astype(np.int32),
    'pair': rng.normal(size=(n, 3)).astype(np.float32),  # rank 2, but no time axis
  }


def test_default_time_keys():
  data = _dataset()
  assert batching.default_time_keys(data) == ('inputs', 'targets')
  assert batching.default_time_keys({'lengths': data['lengths']}) == ()
  assert batching.default_time_keys({'inputs': data['labels'], 'pair': data['pair']}) == ()
  # Token ids: inputs int32[n, time], rank 2.
  tokens = {'inputs': data['targets'], 'lengths': data['lengths'], 'pair': data['pair']}
  assert batching.default_time_keys(tokens) == ('inputs',)


def test_plan_batches_and_batches_gather_each_planned_row():
  data = _dataset()
  buckets = batching.Buckets.from_lengths(data['lengths'], 2)
  plan = batching.epoch_plan(data['lengths'], 4, buckets=buckets, drop_remainder=False)
  got = batching.plan_batches(data, plan)
  assert len(got) == len(plan)
  for batch, idx, t in zip(got, plan.indices, plan.times, strict=True):
    assert batch['inputs'].shape == (4, t, 2) and batch['targets'].shape == (4, t)
    assert batch['pair'].shape == (4, 3)
    for r, i in enumerate(idx):
      if i < 0:
        assert not any(batch[k][r].any() for k in batch)
      else:
        np.testing.assert_array_equal(batch['inputs'][r], data['inputs'][i, :t])
        np.testing.assert_array_equal(batch['pair'][r], data['pair'][i])
  # `batches`: the full-length batches of `epoch_plan` with the same arguments, from `start`.
  for kwargs in ({}, {'seed': 3, 'epoch': 2, 'drop_remainder': False, 'start': 1}):
    start = kwargs.pop('start', 0)
    rows = batching.epoch_plan(data['lengths'], 4, **kwargs).indices[start:]
    got = list(batching.batches(data, 4, start=start, **kwargs))
    assert len(got) == len(rows) > 0
    for batch, idx in zip(got, rows, strict=True):
      np.testing.assert_array_equal(batch['inputs'], batching.gather(data, idx)['inputs'])
      assert batch['inputs'].shape == (4, 5, 2)
  stacked = batching.stack(got)
  assert set(stacked) == set(data) and stacked['inputs'].shape == (len(got), 4, 5, 2)
  np.testing.assert_array_equal(stacked['labels'][-1], got[-1]['labels'])
  assert batching.stack(got[:1])['inputs'].shape == (1, 4, 5, 2)  # one step per call
