"""Time series from CSV files: a time column, input and target columns chosen by name.

Plain numpy and the csv module. Every bad cell is a `DataFileError` naming the file, the
line and the column; irregular time steps (gaps, repeats, steps backwards) are reported as
warnings on the returned `Series` (`describe_spacing`), not raised.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import math
import warnings
from collections.abc import Sequence

import numpy as np

from bilstm_jax.errors import DataFileError


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
    """The names of the model's input columns, in feature order."""
    return tuple(self.columns[i] for i in self.input_index)

  @property
  def target_columns(self) -> tuple[str, ...]:
    """The names of the forecast columns, in output order."""
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
  reader = csv.reader(io.StringIO(_decode(path), newline=''))
  try:
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
  except csv.Error as e:
    raise DataFileError(f'{path}:{reader.line_num + 1}: not CSV ({e}).') from e
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


def _decode(path: str) -> str:
  """The file's text (UTF-8, a leading byte-order mark dropped); errors name the line."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise DataFileError(f'{path}: cannot be read: {e.strerror or e}.') from e
  try:
    return data.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    line = data[: e.start].count(b'\n') + 1
    raise DataFileError(f'{path}:{line}: not UTF-8 ({e.reason}).') from e


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
    numbers = np.array([float(s) for s in stamps], np.float64)
  except ValueError:
    numbers = None
  if numbers is not None:
    bad = ~np.isfinite(numbers)
    if bad.any():
      i = int(np.argmax(bad))
      raise DataFileError(
        f'{path}:{lines[i]}: column {name!r}: {stamps[i]!r} is not a finite time stamp.'
      )
    return numbers
  out = np.empty(len(stamps), 'datetime64[s]')
  for i, (stamp, line) in enumerate(zip(stamps, lines, strict=True)):
    try:
      with warnings.catch_warnings():
        # numpy warns, then converts to UTC, on a time zone: mixed with local stamps that
        # would shift rows silently, so it is an error here.
        warnings.simplefilter('error', UserWarning)
        out[i] = np.datetime64(stamp.replace(' ', 'T', 1), 's')
      if np.isnat(out[i]):
        raise ValueError(stamp)
    except UserWarning:
      raise DataFileError(
        f'{path}:{line}: column {name!r}: {stamp!r} has a time zone; write every time '
        'stamp without one.'
      ) from None
    except (ValueError, OverflowError):
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
