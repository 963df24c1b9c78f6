"""Bucket boundaries: the least total padding, checked against every possible choice."""

import itertools

import numpy as np

from bilstm_jax.data import batching


def padding(lengths: np.ndarray, boundaries) -> int:
  b = np.asarray(boundaries)
  lengths = np.maximum(lengths, 1)
  return int((b[np.searchsorted(b, lengths)] - lengths).sum())


def test_boundaries_pad_least_of_every_choice():
  rng = np.random.default_rng(0)
  for _ in range(200):
    lengths = rng.integers(0, 15, rng.integers(1, 12))
    k = int(rng.integers(1, 5))
    got = batching.Buckets.from_lengths(lengths, k).boundaries
    values = np.unique(np.maximum(lengths, 1))
    longest = int(values[-1])
    least = min(
      padding(lengths, sorted(set(chosen) | {longest}))
      for r in range(k)
      for chosen in itertools.combinations(values[:-1].tolist(), r)
    )
    assert len(got) <= k and got[-1] == longest and list(got) == sorted(set(got))
    assert padding(lengths, got) == least, (lengths, k, got)


def test_a_long_tail_gets_its_own_buckets():
  # 90 short and 10 long examples: quantiles (11, 12, 200) would pad the 100s to 200.
  lengths = np.array([10] * 30 + [11] * 30 + [12] * 30 + [100] * 5 + [200] * 5)
  assert batching.Buckets.from_lengths(lengths, 3).boundaries == (12, 100, 200)
