"""Bucket boundaries: the few padded sizes (lengths, or widths) a run's batches take.

`Buckets.from_lengths` chooses them on the training data so that padding every example to
the smallest boundary that holds it costs least; `data.batching` plans epochs with them.
Plain numpy.
"""

from __future__ import annotations

import dataclasses

import numpy as np


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
