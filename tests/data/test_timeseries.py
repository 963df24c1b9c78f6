"""Reading, splitting, windowing and scaling time series (bilstm_jax.data.timeseries)."""

import numpy as np
import pytest

from bilstm_jax.data import csv_series
from bilstm_jax.data import timeseries as ts
from bilstm_jax.errors import DataFileError


def write_csv(path, header, rows):
  path.write_text('\n'.join([','.join(header), *(','.join(map(str, r)) for r in rows)]) + '\n')
  return str(path)


def hourly(n, start=0):
  """ISO time stamps one hour apart, from 2020-01-01 00:00 plus `start` hours."""
  t0 = np.datetime64('2020-01-01T00:00:00', 's')
  return [str(t0 + np.timedelta64(start + i, 'h')).replace('T', ' ') for i in range(n)]


@pytest.fixture
def table(tmp_path):
  """A sine, a trend and a step over 40 hourly rows."""
  t = np.arange(40)
  cols = [np.sin(t / 3), 0.5 * t - 2, np.where(t < 20, 1.0, 4.0)]
  rows = [[stamp, *(c[i] for c in cols)] for i, stamp in enumerate(hourly(40))]
  return write_csv(tmp_path / 'series.csv', ['date', 'sine', 'trend', 'step'], rows), cols


def test_read_csv_columns_and_values(table):
  path, cols = table
  series = csv_series.read_csv(
    path, 'date', input_columns=['sine', 'trend'], target_columns=['step']
  )
  assert series.columns == ('sine', 'trend', 'step')
  assert series.input_columns == ('sine', 'trend')
  assert series.target_columns == ('step',)
  np.testing.assert_allclose(series.values, np.stack(cols, 1), rtol=1e-12)
  assert series.lines[0] == 2 and series.lines[-1] == 41
  assert series.time[1] - series.time[0] == np.timedelta64(1, 'h')
  assert series.warnings == ()


def test_read_csv_defaults_to_every_column_but_time(table):
  series = csv_series.read_csv(table[0])
  assert series.columns == ('sine', 'trend', 'step')
  np.testing.assert_array_equal(series.input_index, [0, 1, 2])
  np.testing.assert_array_equal(series.target_index, [0, 1, 2])


def test_read_csv_numeric_time_and_no_time(tmp_path):
  path = write_csv(tmp_path / 'a.csv', ['t', 'x'], [[0.5, 1], [1.0, 2], [1.5, 3]])
  series = csv_series.read_csv(path, 't')
  np.testing.assert_array_equal(series.time, [0.5, 1.0, 1.5])
  series = csv_series.read_csv(path, None, input_columns=['x'])
  assert series.time is None and series.columns == ('x',)


@pytest.mark.parametrize(
  'rows, message',
  [
    ([['2020-01-01 00:00:00', 1, 2], ['2020-01-01 01:00:00', '', 3]], ":3: column 'x': empty"),
    ([['2020-01-01 00:00:00', 1, 2], ['2020-01-01 01:00:00', 'abc', 3]], ":3: column 'x': 'abc'"),
    ([['2020-01-01 00:00:00', 1, 2], ['2020-01-01 01:00:00', 1, 'nan']], ":3: column 'y': 'nan'"),
    ([['2020-01-01 00:00:00', 1, 2], ['2020-01-01 01:00:00', 1]], ":3: column 'y': missing"),
    ([['2020-01-01 00:00:00', 1, 2], ['2020-01-01 01:00:00', 1, 2, 9]], ':3: row has 4 cells'),
    ([['2020-01-01 00:00:00', 1, 2], ['yesterday', 1, 2]], ":3: column 'date': 'yesterday'"),
    ([['2020-01-01 00:00:00', 1, 2], ['', 1, 2]], ":3: column 'date': empty"),
  ],
)
def test_read_csv_bad_cells_name_line_and_column(tmp_path, rows, message):
  path = write_csv(tmp_path / 'bad.csv', ['date', 'x', 'y'], rows)
  with pytest.raises(DataFileError, match=f'^{path}{message}'):
    csv_series.read_csv(path)


def test_read_csv_bad_cell_in_unused_column_is_ignored(tmp_path):
  rows = [['2020-01-01 00:00:00', 1, 'n/a'], ['2020-01-01 01:00:00', 2, '']]
  path = write_csv(tmp_path / 'a.csv', ['date', 'x', 'notes'], rows)
  np.testing.assert_array_equal(csv_series.read_csv(path, input_columns=['x']).values[:, 0], [1, 2])


def test_read_csv_blank_lines_keep_line_numbers(tmp_path):
  path = tmp_path / 'a.csv'
  path.write_text('date,x\n2020-01-01 00:00:00,1\n\n2020-01-01 01:00:00,oops\n')
  with pytest.raises(DataFileError, match=":4: column 'x'"):
    csv_series.read_csv(str(path))


@pytest.mark.parametrize(
  'kwargs, message',
  [
    ({'input_columns': ['z']}, ":1: column 'z': not in the header"),
    ({'time_column': 'time'}, ":1: column 'time': not in the header"),
    ({'target_columns': ['date']}, ":1: column 'date': is the time column"),
  ],
)
def test_read_csv_bad_column_choice(tmp_path, kwargs, message):
  path = write_csv(tmp_path / 'a.csv', ['date', 'x'], [['2020-01-01 00:00:00', 1]])
  with pytest.raises(DataFileError, match=f'^{path}{message}'):
    csv_series.read_csv(path, **kwargs)


def test_read_csv_file_problems(tmp_path):
  with pytest.raises(DataFileError, match='cannot be read'):
    csv_series.read_csv(str(tmp_path / 'missing.csv'))
  (tmp_path / 'empty.csv').write_text('')
  with pytest.raises(DataFileError, match=':1: the file is empty'):
    csv_series.read_csv(str(tmp_path / 'empty.csv'))
  with pytest.raises(DataFileError, match='no data rows'):
    csv_series.read_csv(write_csv(tmp_path / 'h.csv', ['date', 'x'], []))
  with pytest.raises(DataFileError, match=":1: column 'x': named twice"):
    csv_series.read_csv(write_csv(tmp_path / 'd.csv', ['date', 'x', 'x'], [['2020-01-01', 1, 2]]))


def test_gaps_and_duplicates_are_reported_not_raised(tmp_path):
  stamps = hourly(10)
  stamps = stamps[:3] + [stamps[2]] + stamps[3:5] + stamps[8:]  # line 5 repeats; 3 missing
  stamps.append(hourly(1, start=1)[0])  # back in time
  path = write_csv(tmp_path / 'g.csv', ['date', 'x'], [[s, i] for i, s in enumerate(stamps)])
  series = csv_series.read_csv(path)
  assert len(series) == len(stamps)
  warnings = series.warnings
  assert len(warnings) == 3, warnings
  assert warnings[0].startswith(f'{path}:5: time 2020-01-01T02:00:00 repeats')
  assert warnings[1].startswith(f'{path}:8: time 2020-01-01T08:00:00 follows 2020-01-01T04:00:00')
  assert 'gap of 4:00:00' in warnings[1] and 'median step is 1:00:00' in warnings[1]
  assert '3 rows missing' in warnings[1]
  assert warnings[2].startswith(f'{path}:10: time 2020-01-01T01:00:00 is earlier')


def test_describe_spacing_numeric():
  assert csv_series.describe_spacing(np.arange(5.0)) == []
  (msg,) = csv_series.describe_spacing(np.array([0.0, 2, 4, 8, 10]))
  assert msg.startswith(':5: time 8.0 follows 4.0: a gap of 4') and '1 rows missing' in msg


def test_ett_borders_match_the_published_protocol():
  assert ts.ett_borders('h', 96) == {
    'train': (0, 8640),
    'val': (8640 - 96, 11520),
    'test': (11520 - 96, 14400),
  }
  assert ts.ett_borders('m', 336) == {
    'train': (0, 34560),
    'val': (34560 - 336, 46080),
    'test': (46080 - 336, 57600),
  }
  with pytest.raises(ValueError, match='ETT kind'):
    ts.ett_borders('d', 96)


def test_split_by_fractions_matches_the_custom_loader():
  # Autoformer's custom split: test is the last int(0.2 n) rows, e.g. ETTh1 [13936, 17420).
  splits = ts.split_by_fractions(17420, input_len=96)
  assert splits == {'train': (0, 12194), 'val': (12194 - 96, 13936), 'test': (13936 - 96, 17420)}


def test_windows_on_a_ramp_have_exact_indices():
  values = np.arange(12.0)[:, None]  # value == row number
  windows = ts.make_windows((2, 12), input_len=3, horizon=2, stride=2)
  # A window at 8 would forecast rows 11 and 12, and row 12 is outside the range.
  np.testing.assert_array_equal(windows.starts, [2, 4, 6])
  np.testing.assert_array_equal(windows.input_rows()[0], [2, 3, 4])
  np.testing.assert_array_equal(windows.target_rows()[-1], [9, 10])
  np.testing.assert_array_equal(ts.make_windows((2, 13), 3, 2, stride=2).starts, [2, 4, 6, 8])
  inputs, targets = ts.gather(values, windows, [0], [0])
  assert inputs.shape == (3, 3, 1) and targets.shape == (3, 2, 1)
  assert inputs.dtype == targets.dtype == np.float32
  np.testing.assert_array_equal(inputs[1, :, 0], [4, 5, 6])
  np.testing.assert_array_equal(targets[1, :, 0], [7, 8])
  # Stride 1 gives hi - lo - input_len - horizon + 1 windows, the last ending at hi.
  windows = ts.make_windows((0, 12), input_len=3, horizon=2)
  assert len(windows) == 8 and windows.target_rows()[-1, -1] == 11
  assert len(ts.make_windows((0, 4), input_len=3, horizon=2)) == 0
  assert len(ts.make_windows((0, 5), input_len=3, horizon=2)) == 1


def test_gather_a_batch_and_channel_selection():
  values = np.arange(30.0).reshape(10, 3)
  windows = ts.make_windows((0, 10), input_len=2, horizon=1)
  inputs, targets = ts.gather(values, windows, [0, 2], [1], index=np.array([3, 0]))
  np.testing.assert_array_equal(inputs[0], [[9, 11], [12, 14]])
  np.testing.assert_array_equal(targets[:, 0, 0], [16, 7])


def test_no_target_crosses_a_split_border():
  input_len, horizon = 5, 3
  boundaries = [0, 30, 40, 52]
  splits = ts.split_by_rows(boundaries, input_len)
  for k, name in enumerate(('train', 'val', 'test')):
    windows = ts.make_windows(splits[name], input_len, horizon)
    targets, inputs = windows.target_rows(), windows.input_rows()
    own = (boundaries[k], boundaries[k + 1])
    assert targets.min() == own[0] + (input_len if k == 0 else 0)  # first target at border
    assert targets.max() == own[1] - 1  # last target is the split's last row
    if k > 0:
      # The first window's inputs read the previous split's last input_len rows.
      np.testing.assert_array_equal(inputs[0], np.arange(own[0] - input_len, own[0]))
    # Every window of later splits has targets after every earlier split's rows.
    assert targets.min() >= own[0]


def test_batches_cover_every_window_once():
  got = np.concatenate(list(ts.batches(10, 4, rng=np.random.default_rng(0))))
  np.testing.assert_array_equal(np.sort(got), np.arange(10))
  assert [len(b) for b in ts.batches(10, 4)] == [4, 4, 2]
  assert [len(b) for b in ts.batches(10, 4, drop_last=True)] == [4, 4]


def test_scaler_uses_training_rows_only():
  rng = np.random.default_rng(0)
  values = rng.normal(3.0, 2.0, (50, 2))
  train = (0, 30)
  scaler = ts.Scaler.fit(values, train, ['a', 'b'])
  np.testing.assert_allclose(scaler.mean, values[:30].mean(0))
  np.testing.assert_allclose(scaler.std, values[:30].std(0))
  changed = values.copy()
  changed[30:] = 1e6
  again = ts.Scaler.fit(changed, train, ['a', 'b'])
  np.testing.assert_array_equal(again.mean, scaler.mean)
  np.testing.assert_array_equal(again.std, scaler.std)
  scaled = scaler.transform(values[:30])
  np.testing.assert_allclose(scaled.mean(0), 0, atol=1e-12)
  np.testing.assert_allclose(scaled.std(0), 1, rtol=1e-12)


def test_scaler_round_trip_columns_and_json():
  values = np.array([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0], [2.0, 50.0, 5.0]])
  scaler = ts.Scaler.fit(values, (0, 3), ['a', 'b', 'flat'])
  assert scaler.std[2] == 1.0  # a constant column is only centred
  np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(values)), values)
  restored = ts.Scaler.from_json(scaler.to_json())
  assert restored.columns == scaler.columns
  np.testing.assert_array_equal(restored.mean, scaler.mean)
  np.testing.assert_array_equal(restored.std, scaler.std)
  # Predictions of one target column (e.g. float32[n, horizon, 1]) undo with its stats.
  preds = scaler.transform(values[:, 1:2], columns=['b']).astype(np.float32)[None]
  np.testing.assert_allclose(scaler.inverse_transform(preds, columns=['b'])[0], values[:, 1:2])
  assert scaler.inverse_transform(preds, columns=['b']).dtype == np.float32
  with pytest.raises(ValueError, match="no columns \\['c'\\]"):
    scaler.transform(values, columns=['c'])
  with pytest.raises(ValueError, match='not a non-empty range'):
    ts.Scaler.fit(values, (0, 4), ['a', 'b', 'flat'])
