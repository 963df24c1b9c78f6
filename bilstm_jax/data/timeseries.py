"""Multivariate time series from CSV files: reading, splits, windows and scaling.

Plain numpy and the csv module; knows nothing about JAX or Flax.

The pieces follow the protocol of the long-horizon forecasting benchmarks (Informer,
Autoformer, DLinear, PatchTST):

  1. `read_csv` loads a table: a time column, input columns and target columns by name.
  2. A split is a range of rows `(lo, hi)` that its windows may read. Val and test ranges
     start `input_len` rows before the split proper, so their first windows' inputs look
     back into the previous split while their targets never do (`ett_borders`,
     `split_by_rows`, `split_by_fractions`).
  3. `make_windows` lists every window inside a range as start rows (no copies of the
     data); `gather` copies a batch of them into `inputs` and `targets` arrays.
  4. `Scaler` is fitted on the training rows only and undoes itself for evaluation and
     prediction.

Example:
  >>> series = read_csv('ETTh1.csv', time_column='date')  # every other column, 'M'
  >>> borders = ett_borders('h', input_len=96)
  >>> scaler = Scaler.fit(series.values, borders['train'], series.columns)
  >>> values = scaler.transform(series.values)
  >>> val = make_windows(borders['val'], input_len=96, horizon=96)
  >>> inputs, targets = gather(values, val, series.input_index, series.target_index)
  >>> inputs.shape, targets.shape
  ((2785, 96, 7), (2785, 96, 7))
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
from collections.abc import Iterator, Sequence

import numpy as np

from bilstm_jax.errors import DataFileError

Rows = tuple[int, int]

# Months of 30 days, as the ETT benchmark code counts them: 12 months train, 4 val, 4 test.
_ETT_HOURS = (0, 12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24)
_ETT_ROWS_PER_HOUR = {'h': 1, 'm': 4}


@dataclasses.dataclass(frozen=True)
class Series:
  """A table read by `read_csv`.

  Attributes:
    path: the file it came from.
    columns: names of the columns in `values`: the input columns, then any target
      column that is not an input.
    values: float64[rows, len(columns)].
    input_index: int[in_channels], positions of the input columns in `columns`.
    target_index: int[out_channels], positions of the target columns in `columns`.
    time: the time column, float64[rows] or datetime64[rows]; None without one.
    lines: int[rows], each row's line number in the file (the header is line 1).
    warnings: one line per irregularity of the time column (see `describe_spacing`).
  """

  path: str
  columns: tuple[str, ...]
  values: np.ndarray
  input_index: np.ndarray
  target_index: np.ndarray
  time: np.ndarray | None
  lines: np.ndarray
  warnings: tuple[str, ...]

  @property
  def input_columns(self) -> tuple[str, ...]:
    return tuple(self.columns[i] for i in self.input_index)

  @property
  def target_columns(self) -> tuple[str, ...]:
    return tuple(self.columns[i] for i in self.target_index)

  def __len__(self) -> int:
    return len(self.values)


def read_csv(
  path: str,
  time_column: str | None = 'date',
  input_columns: Sequence[str] | None = None,
  target_columns: Sequence[str] | None = None,
) -> Series:
  """Reads a CSV table with a header line into a `Series`.

  Args:
    path: the CSV file; the first line names the columns.
    time_column: the column holding the time stamps (numbers or ISO 8601 dates such as
      '2016-07-01 00:00:00'), or None if the rows are simply consecutive.
    input_columns: the columns the model reads; None means every column but the time.
    target_columns: the columns to forecast; None means the input columns (features 'M').
      ['OT'] with input_columns=['OT'] is features 'S'; ['OT'] with all inputs is 'MS'.

  Returns:
    The `Series`. Its `warnings` list gaps, repeats and backward steps in the time
    column; they are not errors, because a forecaster can still be trained on such a
    table, but its windows then span uneven stretches of time.

  Raises:
    DataFileError: the file is missing or unreadable, a named column is not in the
      header, or a cell of a used column is empty, not a number (or, in the time
      column, not a date) or not finite; the message names the line and column.
  """
  try:
    with open(path, newline='') as f:
      reader = csv.reader(f)
      header = next(reader, None)
      if header is None:
        raise DataFileError(f'{path}:1: the file is empty; expected a header line.')
      header = [name.strip() for name in header]
      used, input_names, target_names = _choose_columns(
        path, header, time_column, input_columns, target_columns
      )
      cells, lines = [], []
      for row in reader:
        if not any(cell.strip() for cell in row):
          continue  # blank lines carry no row
        if len(row) > len(header):
          raise DataFileError(
            f'{path}:{reader.line_num}: row has {len(row)} cells; the header names '
            f'{len(header)} columns.'
          )
        cells.append(row)
        lines.append(reader.line_num)
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataFileError(f'{path}: cannot be read: {e}') from e
  if not cells:
    raise DataFileError(f'{path}: holds a header but no data rows.')

  columns = list(input_names) + [n for n in target_names if n not in input_names]
  values = np.empty((len(cells), len(columns)), np.float64)
  for j, name in enumerate(columns):
    values[:, j] = [
      _number(path, line, row, used[name], name) for row, line in zip(cells, lines, strict=True)
    ]
  time = None
  if time_column is not None:
    time = _parse_time(path, cells, lines, used[time_column], time_column)
  lines = np.asarray(lines, np.int64)
  return Series(
    path=path,
    columns=tuple(columns),
    values=values,
    input_index=np.array([columns.index(n) for n in input_names], np.int64),
    target_index=np.array([columns.index(n) for n in target_names], np.int64),
    time=time,
    lines=lines,
    warnings=tuple(describe_spacing(time, lines, path)) if time is not None else (),
  )


def _choose_columns(path, header, time_column, input_columns, target_columns):
  seen = set()
  for name in header:
    if name in seen:
      raise DataFileError(f'{path}:1: column {name!r}: named twice in the header.')
    seen.add(name)
  wanted = [time_column] if time_column is not None else []
  if input_columns is None:
    input_columns = [n for n in header if n != time_column]
  if target_columns is None:
    target_columns = input_columns
  for name in [*wanted, *input_columns, *target_columns]:
    if name not in seen:
      raise DataFileError(f'{path}:1: column {name!r}: not in the header {header}.')
  if time_column is not None and time_column in [*input_columns, *target_columns]:
    raise DataFileError(f'{path}:1: column {time_column!r}: is the time column, not a value.')
  if not input_columns or not target_columns:
    raise DataFileError(f'{path}:1: no input or no target columns chosen.')
  return {n: header.index(n) for n in header}, list(input_columns), list(target_columns)


def _cell(path: str, line: int, row: list[str], index: int, name: str) -> str:
  cell = row[index].strip() if index < len(row) else ''
  if not cell:
    what = 'empty (a missing value)' if index < len(row) else 'missing (the row is short)'
    raise DataFileError(f'{path}:{line}: column {name!r}: {what}.')
  return cell


def _number(path: str, line: int, row: list[str], index: int, name: str) -> float:
  cell = _cell(path, line, row, index, name)
  try:
    value = float(cell)
  except ValueError:
    raise DataFileError(f'{path}:{line}: column {name!r}: {cell!r} is not a number.') from None
  if not math.isfinite(value):
    raise DataFileError(f'{path}:{line}: column {name!r}: {cell!r} is not a finite number.')
  return value


def _parse_time(path, cells, lines, index, name) -> np.ndarray:
  """float64[rows] if every stamp is a number, else datetime64[s][rows]."""
  stamps = [_cell(path, line, row, index, name) for row, line in zip(cells, lines, strict=True)]
  try:
    return np.array([float(s) for s in stamps], np.float64)
  except ValueError:
    pass
  out = np.empty(len(stamps), 'datetime64[s]')
  for i, (stamp, line) in enumerate(zip(stamps, lines, strict=True)):
    try:
      out[i] = np.datetime64(stamp.replace(' ', 'T', 1), 's')
    except ValueError:
      raise DataFileError(
        f'{path}:{line}: column {name!r}: {stamp!r} is neither a number nor an ISO date.'
      ) from None
  return out


def describe_spacing(
  time: np.ndarray, lines: np.ndarray | None = None, path: str = ''
) -> list[str]:
  """Lists the steps of a time column that differ from its median step.

  Args:
    time: float[rows] or datetime64[rows], in file order.
    lines: int[rows], line numbers to name (default: 2, 3, ... as after a header).
    path: the file name to put in front of each line number.

  Returns:
    One message per irregular step: a repeated time stamp, a step backwards, or a gap
    (a step longer than the median, with the number of missing rows). Empty if the
    spacing is regular. The series is not changed: a caller decides whether to accept it.
  """
  if lines is None:
    lines = np.arange(2, len(time) + 2)
  is_date = np.issubdtype(time.dtype, np.datetime64)
  t = time.astype('datetime64[s]').astype(np.int64) if is_date else time.astype(np.float64)
  if len(t) < 2:
    return []
  steps = np.diff(t)
  median = float(np.median(steps))

  def span(seconds):
    return str(datetime.timedelta(seconds=int(seconds))) if is_date else f'{seconds:g}'

  out = []
  for i in np.flatnonzero(steps != median):
    step, where = float(steps[i]), f'{path}:{int(lines[i + 1])}: time {time[i + 1]}'
    if step == 0:
      out.append(f'{where} repeats the previous row.')
    elif step < 0:
      out.append(f'{where} is earlier than the previous row ({time[i]}).')
    elif median > 0 and step > median:
      out.append(
        f'{where} follows {time[i]}: a gap of {span(step)} where the median step is '
        f'{span(median)} (about {step / median - 1:g} rows missing).'
      )
    else:
      out.append(
        f'{where} follows {time[i]} after {span(step)}; the median step is {span(median)}.'
      )
  return out


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
    obj = json.loads(text)
    return cls(
      tuple(obj['columns']), np.asarray(obj['mean'], np.float64), np.asarray(obj['std'], np.float64)
    )
