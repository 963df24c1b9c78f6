"""Multivariate time series from CSV files: reading, splits, windows and scaling.

Plain numpy and the csv module; knows nothing about JAX or Flax.

The pieces follow the protocol of the long-horizon forecasting benchmarks (Informer,
Autoformer, DLinear, PatchTST):

  1. `csv_series.read_csv` loads a table: a time column, input columns and target columns
     by name.
  2. A split is a range of rows `(lo, hi)` that its windows may read. Val and test ranges
     start `input_len` rows before the split proper, so their first windows' inputs look
     back into the previous split while their targets never do (`ett_borders`,
     `split_by_rows`, `split_by_fractions`).
  3. `make_windows` lists every window inside a range as start rows (no copies of the
     data); `gather` copies a batch of them into `inputs` and `targets` arrays.
  4. `Scaler` is fitted on the training rows only and undoes itself for evaluation and
     prediction.

Example:
  >>> series = csv_series.read_csv('ETTh1.csv', time_column='date')  # every other column, 'M'
  >>> borders = ett_borders('h', input_len=96)
  >>> scaler = Scaler.fit(series.values, borders['train'], series.columns)
  >>> values = scaler.transform(series.values)
  >>> val = make_windows(borders['val'], input_len=96, horizon=96)
  >>> inputs, targets = gather(values, val, series.input_index, series.target_index)
  >>> inputs.shape, targets.shape
  ((2785, 96, 7), (2785, 96, 7))
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence

import numpy as np

Rows = tuple[int, int]

# Months of 30 days, as the ETT benchmark code counts them: 12 months train, 4 val, 4 test.
_ETT_HOURS = (0, 12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24)
_ETT_ROWS_PER_HOUR = {'h': 1, 'm': 4}


def ett_borders(kind: str, input_len: int) -> dict[str, Rows]:
  """The standard ETT splits (12/4/4 months of 30 days) as the rows their windows read.

  Args:
    kind: 'h' for the hourly files (ETTh1, ETTh2), 'm' for the 15-minute ones (ETTm1/2).
    input_len: the input window; val and test start this many rows before their first
      target so that their first window has full inputs.

  Returns:
    {'train': (0, 8640), 'val': (8640 - input_len, 11520),
    'test': (11520 - input_len, 14400)} for 'h'; every border times 4 for 'm'.
    Rows after the test range are not used by the benchmark.
  """
  if kind not in _ETT_ROWS_PER_HOUR:
    raise ValueError(f"ETT kind must be 'h' or 'm'; got {kind!r}.")
  per_hour = _ETT_ROWS_PER_HOUR[kind]
  return split_by_rows([b * per_hour for b in _ETT_HOURS], input_len)


def split_by_rows(
  boundaries: Sequence[int], input_len: int, names: Sequence[str] = ('train', 'val', 'test')
) -> dict[str, Rows]:
  """Named splits from the row where each one's targets begin.

  Args:
    boundaries: int[len(names) + 1], increasing: split k owns rows
      [boundaries[k], boundaries[k + 1]).
    input_len: how far each split after the first may read back into the previous one
      (its windows' inputs only; `make_windows` keeps targets inside the split).
    names: the splits' names.

  Returns:
    {name: (lo, hi)}: the rows each split's windows may read.
  """
  boundaries = [int(b) for b in boundaries]
  if len(boundaries) != len(names) + 1:
    raise ValueError(f'{len(names)} splits need {len(names) + 1} boundaries; got {boundaries}.')
  if boundaries[0] < 0 or any(a >= b for a, b in zip(boundaries[:-1], boundaries[1:], strict=True)):
    raise ValueError(f'Split boundaries must be >= 0 and increasing; got {boundaries}.')
  out = {}
  for k, name in enumerate(names):
    lo = boundaries[k] if k == 0 else max(boundaries[k] - input_len, 0)
    out[name] = (lo, boundaries[k + 1])
  return out


def split_by_fractions(
  num_rows: int, input_len: int, train: float = 0.7, test: float = 0.2
) -> dict[str, Rows]:
  """Chronological train/val/test splits by fractions of the rows.

  As in the custom-dataset loader of Autoformer and Time-Series-Library: train is the
  first int(num_rows * train) rows, test the last int(num_rows * test), val the rest in
  between; val and test read back `input_len` rows.

  Returns:
    {'train': (lo, hi), 'val': (lo, hi), 'test': (lo, hi)}, as `split_by_rows`.
  """
  num_train, num_test = int(num_rows * train), int(num_rows * test)
  return split_by_rows([0, num_train, num_rows - num_test, num_rows], input_len)


@dataclasses.dataclass(frozen=True)
class Windows:
  """Every window inside a range of rows, as start rows; no data is copied.

  Window i reads inputs from rows [starts[i], starts[i] + input_len) and predicts rows
  [starts[i] + input_len, starts[i] + input_len + horizon).

  Attributes:
    starts: int64[n], increasing by the stride.
    input_len: rows of input.
    horizon: rows to forecast.
  """

  starts: np.ndarray
  input_len: int
  horizon: int

  def __len__(self) -> int:
    return len(self.starts)

  def input_rows(self, index: np.ndarray | slice = slice(None)) -> np.ndarray:
    """int64[n, input_len]: the rows each selected window reads."""
    return self.starts[index][:, None] + np.arange(self.input_len)

  def target_rows(self, index: np.ndarray | slice = slice(None)) -> np.ndarray:
    """int64[n, horizon]: the rows each selected window forecasts."""
    return self.starts[index][:, None] + self.input_len + np.arange(self.horizon)


def make_windows(rows: Rows, input_len: int, horizon: int, stride: int = 1) -> Windows:
  """Lists the windows whose inputs and targets both lie inside `rows`.

  Args:
    rows: (lo, hi), a split from `ett_borders` or `split_by_rows`: a val or test range
      already includes the `input_len` rows its first inputs read back.
    input_len: rows of input per window (>= 1).
    horizon: rows to forecast per window (>= 1).
    stride: rows between consecutive windows' starts; the benchmarks use 1.

  Returns:
    `Windows` starting at lo, lo + stride, ...; the last one's targets end at or before
    hi. Empty if the range is shorter than input_len + horizon.
  """
  if input_len < 1 or horizon < 1 or stride < 1:
    raise ValueError(
      f'input_len, horizon and stride must be >= 1; got {input_len}, {horizon}, {stride}.'
    )
  lo, hi = rows
  count = max((hi - lo - input_len - horizon) // stride + 1, 0)
  starts = lo + stride * np.arange(count, dtype=np.int64)
  return Windows(starts=starts, input_len=input_len, horizon=horizon)


def gather(
  values: np.ndarray,
  windows: Windows,
  input_index: Sequence[int] | np.ndarray,
  target_index: Sequence[int] | np.ndarray,
  index: np.ndarray | slice = slice(None),
) -> tuple[np.ndarray, np.ndarray]:
  """Copies windows out of a table.

  Args:
    values: float[rows, columns], usually scaled (`Scaler.transform`).
    windows: from `make_windows`.
    input_index: int[in_channels], the columns the model reads.
    target_index: int[out_channels], the columns it forecasts.
    index: which windows (a batch of positions into `windows`); default all.

  Returns:
    inputs: float32[n, input_len, in_channels].
    targets: float32[n, horizon, out_channels].
  """
  input_index, target_index = np.asarray(input_index), np.asarray(target_index)
  inputs = values[windows.input_rows(index)[..., None], input_index]
  targets = values[windows.target_rows(index)[..., None], target_index]
  return inputs.astype(np.float32), targets.astype(np.float32)


def batches(
  num: int, batch_size: int, rng: np.random.Generator | None = None, drop_last: bool = False
) -> Iterator[np.ndarray]:
  """Yields int64[<= batch_size] positions into `num` windows, shuffled if `rng` is given.

  Evaluation keeps the last short batch (drop_last=False) so that every window counts.
  """
  order = rng.permutation(num) if rng is not None else np.arange(num)
  stop = num - num % batch_size if drop_last else num
  for i in range(0, stop, batch_size):
    yield order[i : i + batch_size]


@dataclasses.dataclass(frozen=True)
class Scaler:
  """Per-column standardisation, (x - mean) / std, fitted on training rows only.

  A column with zero spread over the training rows gets std 1 (it is only centred), as
  scikit-learn's StandardScaler does.

  Attributes:
    columns: the column names, in the order of the last axis of the arrays it scales.
    mean: float64[columns].
    std: float64[columns], population std (ddof=0), as in the benchmark code.
  """

  columns: tuple[str, ...]
  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, values: np.ndarray, rows: Rows, columns: Sequence[str]) -> Scaler:
    """Fits on values[lo:hi]: pass the training split, never a range reaching into val/test.

    Args:
      values: float[rows, columns].
      rows: (lo, hi), the training rows.
      columns: the names of values' columns.
    """
    lo, hi = rows
    if not 0 <= lo < hi <= len(values):
      raise ValueError(f'Scaler rows {rows} are not a non-empty range of {len(values)} rows.')
    if len(columns) != values.shape[1]:
      raise ValueError(f'{len(columns)} column names for {values.shape[1]} columns.')
    train = np.asarray(values[lo:hi], np.float64)
    std = train.std(axis=0)
    return cls(tuple(columns), train.mean(axis=0), np.where(std > 0, std, 1.0))

  def _stats(self, columns: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    if columns is None:
      return self.mean, self.std
    unknown = [c for c in columns if c not in self.columns]
    if unknown:
      raise ValueError(f'Scaler has no columns {unknown}; it has {list(self.columns)}.')
    index = [self.columns.index(c) for c in columns]
    return self.mean[index], self.std[index]

  def transform(self, x: np.ndarray, columns: Sequence[str] | None = None) -> np.ndarray:
    """Scales x: float[..., len(columns)]; columns default to all, in fitted order.

    Returns an array of x's float dtype (float64 for integer input).
    """
    mean, std = self._stats(columns)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return ((x - mean) / std).astype(dtype)

  def inverse_transform(self, x: np.ndarray, columns: Sequence[str] | None = None) -> np.ndarray:
    """Undoes `transform`, e.g. on predictions float[n, horizon, out_channels] with
    columns=series.target_columns."""
    mean, std = self._stats(columns)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return (x * std + mean).astype(dtype)

  def to_json(self) -> str:
    """The scaler as JSON text; floats are written exactly (repr round-trips)."""
    return json.dumps(
      {'columns': list(self.columns), 'mean': self.mean.tolist(), 'std': self.std.tolist()}
    )

  @classmethod
  def from_json(cls, text: str) -> Scaler:
    """The inverse of `to_json`: the same columns, means and deviations, bit for bit."""
    obj = json.loads(text)
    return cls(
      tuple(obj['columns']), np.asarray(obj['mean'], np.float64), np.asarray(obj['std'], np.float64)
    )
