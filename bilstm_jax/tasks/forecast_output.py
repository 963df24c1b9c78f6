"""Forecast outputs: the time stamps after a series, a plot of a window's history and
forecast, `records` (a forecast task's readable predictions, `Task.records`) and
`write_forecast` (a trained run's forecast of a CSV's future as a CSV)."""

from __future__ import annotations

import os

import numpy as np

from bilstm_jax.errors import DataFileError


def future_times(time: np.ndarray, horizon: int) -> np.ndarray:
  """The `horizon` time stamps after a time column's last, at its median step.

  Returns:
    int64[horizon] Unix seconds for a date column (int32 range, as JAX keeps them), else
    float32[horizon].
  """
  is_date = np.issubdtype(time.dtype, np.datetime64)
  t = time.astype('datetime64[s]').astype(np.int64) if is_date else time.astype(np.float64)
  step = np.median(np.diff(t)) if len(t) > 1 else 1
  future = t[-1] + step * np.arange(1, horizon + 1)
  if is_date:
    if future.max() >= 2**31:
      raise DataFileError('Forecast time stamps after 2038 do not fit in int32 seconds.')
    return future.astype(np.int32)
  return future.astype(np.float32)


def date_stamp(seconds) -> str:
  """Unix seconds as 'YYYY-MM-DD HH:MM:SS' (how the forecast rows name their time)."""
  return str(np.datetime64(int(seconds), 's')).replace('T', ' ')


def records(task, dataset: dict, predictions: dict, source) -> list[dict]:
  """One record per window: its forecast rows in the table's units.

  Args:
    task: the fitted forecast task (its target columns).
    dataset: the windows; a CSV's future window has 'time' [n, horizon] (`future_times`).
    predictions: 'forecast' float32[n, horizon, out], and for an ensemble
      'forecast_std' (the members' spread).
    source: unused (the windows carry their time stamps).

  Returns:
    [{'forecast': [{'time': '2018-06-26 20:00:00', column: value, ...}, ...]}, ...]: each
    row's time stamp when the table has a time column (a date, or its number), else its
    'step' after the window (1, 2, ...); an ensemble adds '<column>_std' per row.
  """
  del source
  columns = task.sizes['target_columns']
  times = dataset.get('time')
  spread = predictions.get('forecast_std')
  out = []
  for i, window in enumerate(np.asarray(predictions['forecast'])):
    rows = []
    for h, values in enumerate(window):
      if times is None:
        row = {'step': h + 1}
      else:
        t = times[i, h]
        row = {'time': date_stamp(t) if np.issubdtype(times.dtype, np.integer) else float(t)}
      row.update({c: round(float(v), 6) for c, v in zip(columns, values, strict=True)})
      if spread is not None:
        stds = zip(columns, spread[i, h], strict=True)
        row.update({f'{c}_std': round(float(v), 6) for c, v in stds})
      rows.append(row)
    out.append({'forecast': rows})
  return out


def plot_window(history, target, forecast, columns, path, baselines=None, times=None) -> None:
  """History, target (if any) and forecast of one window, one panel per channel (a PNG).

  Args:
    history: float[input_len, out]; target: float[horizon, out] or None;
    forecast: float[horizon, out]; columns: the channels' names;
    baselines: {name: float[horizon, out]} drawn thin; times: optional x values
      (input_len + horizon of them).
  """
  try:
    import matplotlib
  except ImportError:
    return
  matplotlib.use('Agg')  # files only; never opens a window
  import matplotlib.pyplot as plt

  os.makedirs(os.path.dirname(path), exist_ok=True)
  n_in, n_out = len(history), len(forecast)
  x = np.arange(n_in + n_out) if times is None else np.asarray(times)
  shown = min(len(columns), 7)
  fig, axes = plt.subplots(shown, 1, figsize=(9, 1.6 * shown + 0.8), dpi=110, sharex=True)
  axes = np.atleast_1d(axes)
  for k, ax in enumerate(axes):
    ax.plot(x[:n_in], history[:, k], color='black', lw=1, label='history')
    if target is not None:
      ax.plot(x[n_in:], target[:, k], color='gray', lw=1, label='actual')
    for name, b in (baselines or {}).items():
      ax.plot(x[n_in:], b[:, k], lw=0.8, ls=':', label=name)
    ax.plot(x[n_in:], forecast[:, k], color='tab:red', lw=1.2, label='forecast')
    ax.set_ylabel(columns[k], fontsize='small')
    ax.grid(True, alpha=0.3)
  axes[0].legend(loc='upper left', fontsize='x-small', ncol=5)
  fig.autofmt_xdate()
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_forecast(trained, csv_path: str, output: str, plots_dir: str | None = None) -> dict:
  """Forecasts the rows after the end of a CSV and writes them as a CSV, with a plot.

  Args:
    trained: `bilstm_jax.load(workdir)` of a forecast run.
    csv_path: a table with the training file's columns; its last `input_len` rows are read.
    output: the CSV to write: the time column (ISO dates or numbers), then the targets
      in the table's units.
    plots_dir: where to draw `forecast.png` (history and forecast); None: no plot.

  Returns:
    The predictions dict ('forecast' float32[1, horizon, out], 'forecast_scaled', 'time').
  """
  task = trained.task
  series = task._checked_series(csv_path)
  preds = trained.predict_arrays(csv_path)
  forecast = np.asarray(preds['forecast'][0])
  columns = task.sizes['target_columns']
  stamps = [str(i + 1) for i in range(len(forecast))]
  if series.time is not None:
    times = future_times(series.time, len(forecast))
    if np.issubdtype(series.time.dtype, np.datetime64):
      stamps = [date_stamp(t) for t in times]
    else:
      stamps = [f'{t:g}' for t in times]
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, 'w') as f:
    f.write(','.join([task.data['time_column'] or 'step', *columns]) + '\n')
    for stamp, row in zip(stamps, forecast, strict=True):
      f.write(','.join([stamp, *(f'{v:.6g}' for v in row)]) + '\n')
  if plots_dir is not None:
    tpos = [series.columns.index(c) for c in columns]
    history = series.values[-task.data['input_len'] :, tpos]
    times = None
    if series.time is not None and np.issubdtype(series.time.dtype, np.datetime64):
      future = future_times(series.time, len(forecast)).astype('datetime64[s]')
      times = np.concatenate([series.time[-len(history) :].astype('datetime64[s]'), future])
    plot_window(
      history, None, forecast, columns, os.path.join(plots_dir, 'forecast.png'), times=times
    )
  return preds
